# SPDX-License-Identifier: Apache-2.0
"""Vetting a host and port a tenant chose, then connecting to the vetted address itself.

Every connection made on a tenant's behalf (HTTP through `guard.py`, SMTP accounts, IMAP
bounce and PEC mailboxes) goes through `vetted_addresses`: the host name is resolved once,
every address is judged by the `OutboundPolicy` (`mail_proxy.outbound`), and the caller
connects to one of the returned addresses, never to the name again. A second resolution would
reopen the DNS-rebinding window (public answer when checked, private answer when used).
TLS keeps verifying the certificate and sending SNI for the host *name*: callers pass it on.

Refusals raise `DestinationRefused` with a fixed text that says nothing about the network
(`REFUSED_REASON`): whether the name exists, which address it has, whether a port is open is
logged for the admin (`log`), never shown to the tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable

from mail_proxy.errors import DestinationRefused
from mail_proxy.outbound import OutboundPolicy, valid_host_name

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""(host, port) -> the IP addresses it resolves to, as strings; raises OSError on failure."""

REFUSED_REASON = (
    "destination refused (not found or not allowed): the host name must resolve (DNS) to "
    "public addresses only; an admin may allow private destinations with GMP_OUTBOUND_ALLOW"
)


def refused_text(host: str) -> str:
    """The reason shown for `host`: the name the tenant gave (trimmed), never what it resolved
    to, the same whether it was refused or not found."""
    shown = "".join(ch if ch.isprintable() else "?" for ch in host[:100])
    return f"{shown}: {REFUSED_REASON}"


class Unresolvable(OSError):
    """The host name has no address (DNS failure, maybe temporary). Its text is
    `refused_text(host)`, so a tenant cannot tell a missing internal name from a refused one."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (getaddrinfo), run off the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for *_, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _ascii_name(name: str) -> str:
    """An internationalised host name in its ASCII (IDNA, RFC 3490) form, as DNS knows it;
    unchanged when it is ASCII already or cannot be encoded (then refused as not a name)."""
    if name.isascii():
        return name
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


async def vetted_addresses(
    policy: OutboundPolicy,
    host: str,
    port: int,
    *,
    resolver: Resolver = system_resolver,
    timeout_seconds: float | None = None,
    purpose: str = "outbound",
) -> list[str]:
    """The addresses of `host` a connection may use, in resolver order (one DNS query).

    An allow-listed host name (`GMP_OUTBOUND_ALLOW`) keeps every address it resolves to;
    otherwise only the addresses the policy allows (public, or in an allowed CIDR) are kept.
    Raises `DestinationRefused` (fixed, non-revealing text) when none is left or `host` is not
    a host name at all, `Unresolvable` when DNS gives no answer, `TimeoutError` on timeout.
    """
    name = _ascii_name(host.strip().strip("[]").split("%", 1)[0])
    if not is_ip_literal(name) and not valid_host_name(name.rstrip(".").lower()):
        log.warning(
            "destination refused: not a host name",
            extra={"action": "destination_refused", "purpose": purpose, "host": host[:100]},
        )
        raise DestinationRefused(refused_text(host))
    try:
        async with asyncio.timeout(timeout_seconds):
            resolved = await resolver(name, port)
    except (OSError, UnicodeError) as exc:
        log.warning(
            "destination not resolved",
            extra={
                "action": "destination_unresolved",
                "purpose": purpose,
                "host": host[:100],
                "reason": str(exc)[:200],
            },
        )
        raise Unresolvable(refused_text(host)) from exc
    allow_all = policy.allows_host(name)
    allowed: list[str] = []
    refused: list[str] = []
    for text in resolved:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        if allow_all or policy.allows_address(address):
            allowed.append(str(address))
        else:
            refused.append(str(address))
    if not allowed:
        log.warning(
            "destination refused: no allowed address (private or loopback; an admin allows "
            "it with GMP_OUTBOUND_ALLOW, e.g. GMP_OUTBOUND_ALLOW=127.0.0.1/32 for local work)",
            extra={
                "action": "destination_refused",
                "purpose": purpose,
                "host": host[:100],
                "port": port,
                "addresses": refused[:8],
            },
        )
        raise DestinationRefused(refused_text(host))
    return allowed


async def connect_socket(
    addresses: list[str], port: int, *, timeout_seconds: float | None
) -> socket.socket:
    """A connected, non-blocking TCP socket to the first of `addresses` that answers.

    Each address gets `timeout_seconds`; the last error (`OSError`, `TimeoutError`) is raised
    when none answers. The caller owns the socket (hands it to asyncio or closes it).
    """
    loop = asyncio.get_running_loop()
    last: BaseException | None = None
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout_seconds):
                await loop.sock_connect(sock, (address, port))
        except (OSError, TimeoutError) as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    if last is None:
        raise DestinationRefused(REFUSED_REASON)
    raise last
