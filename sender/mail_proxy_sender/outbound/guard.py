# SPDX-License-Identifier: Apache-2.0
"""The SSRF guard inside the HTTP stack: every TCP connection is checked where it is opened.

`GuardedBackend` is an httpcore network backend (httpcore's own plug point for how connections
are made). For each connection it resolves the host name itself, keeps only the addresses the
`OutboundPolicy` allows, and connects to one of *those addresses* (TLS still verifies and sends
SNI for the host name). So the address that is checked is the address that is used: a redirect
opens a new connection and is checked again, and a name that resolves to a public address once
and a private one later (DNS rebinding) is judged on the answer actually used.

`guarded_transport` is an httpx transport whose connection pool uses it. Environment proxies are
ignored on purpose: a proxy would make the checked address the proxy's, not the destination's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from mail_proxy.errors import DestinationRefused, OutboundPermanent
from mail_proxy.outbound import OutboundPolicy, valid_host_name

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""(host, port) -> the IP addresses it resolves to, as strings; raises OSError on failure."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (getaddrinfo), run off the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for *_, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy allows; see the module doc."""

    def __init__(self, policy: OutboundPolicy, *, resolver: Resolver = system_resolver) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._policy.allows_host(host):
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        if not _is_ip(host) and not valid_host_name(host.rstrip(".").lower()):
            raise OutboundPermanent(f"{host[:100]!r} is not a valid host name")
        addresses = await self._allowed_addresses(host, port, timeout)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def _allowed_addresses(
        self, host: str, port: int, timeout_seconds: float | None
    ) -> list[str]:
        try:
            async with asyncio.timeout(timeout_seconds):
                resolved = await self._resolver(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        allowed = []
        for text in resolved:
            try:
                address = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError:
                continue
            if self._policy.allows_address(address):
                allowed.append(str(address))
        if not allowed:
            raise DestinationRefused(
                f"{host} resolves to no public address (refused: private, loopback, "
                "link-local or reserved; an admin may allow it with GMP_OUTBOUND_ALLOW)"
            )
        return allowed

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused("Unix sockets are never reached on a tenant's behalf")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def guarded_transport(
    policy: OutboundPolicy,
    *,
    resolver: Resolver = system_resolver,
    limits: httpx.Limits | None = None,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through `GuardedBackend`."""
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    transport = httpx.AsyncHTTPTransport(trust_env=False, limits=limits)
    # httpx builds its httpcore pool without a way to pass a network backend, so the pool it
    # built is replaced by the same pool with ours. `_pool` is the one private name used here;
    # the SSRF tests fail at once if an httpx upgrade moves it.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(policy, resolver=resolver),
    )
    return transport
