# SPDX-License-Identifier: Apache-2.0
"""Where calls made on a tenant's behalf may go: public addresses, plus what the admin allows.

A tenant chooses URLs (attachment `http_url`s, its `client_base_url` for sync reports and
`endpoint` attachments, webhook targets), so a sender must not become its way into the private
network (SSRF). The rule, applied by the sender's outbound client to every address a host name
*resolves to*, at connect time (so redirects and DNS rebinding are covered):

- an address is public when it is globally routable: not loopback, private (RFC 1918, RFC 4193),
  shared (RFC 6598), link-local (incl. 169.254.169.254 cloud metadata), multicast, reserved,
  documentation or unspecified; IPv6 forms that embed an IPv4 address (IPv4-mapped `::ffff:`,
  6to4 `2002::/16`, NAT64 `64:ff9b::/96`, Teredo) are judged by the IPv4 they carry;
- `GMP_OUTBOUND_ALLOW` lists what the admin allows besides: CIDRs (`10.0.0.0/8`, `::1/128`) or
  host names (`app.default.svc`, `*.svc.cluster.local` for every name under a domain). A host
  name entry allows that name whatever it resolves to; a CIDR allows the addresses in it.

Odd spellings of an address (`127.1`, `2130706433`, `0x7f.1`, `[::ffff:7f00:1]`) need no string
matching: they resolve to the address they mean, which is then judged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from mail_proxy.errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, Teredo), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # (server, client): the client is where packets end up
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """True when `address` (and any IPv4 address it embeds) is globally routable unicast."""
    inner = embedded_ipv4(address)
    if inner is not None and not is_public(inner):
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return True  # judged by the IPv4 it maps (the mapped range itself counts as private)
    return not (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def _host_key(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


@dataclass(frozen=True)
class OutboundPolicy:
    """The allow-list on top of "public addresses only". Build with `parse`."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()  # from `*.domain` entries, stored as ".domain"

    @classmethod
    def parse(cls, entries: Iterable[str]) -> OutboundPolicy:
        """From `GMP_OUTBOUND_ALLOW` entries; raises `ConfigError` naming a bad entry."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        domains: list[str] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = _host_key(entry.removeprefix("*."))
            if not valid_host_name(name):
                raise ConfigError(f"GMP_OUTBOUND_ALLOW: {raw!r} is neither a CIDR nor a host name")
            if entry.startswith("*."):
                domains.append("." + name)
            else:
                hosts.add(name)
        return cls(tuple(networks), frozenset(hosts), tuple(domains))

    def allows_host(self, host: str) -> bool:
        """True when the host name itself is allow-listed (any address it resolves to)."""
        key = _host_key(host)
        return key in self.hosts or any(key.endswith(domain) for domain in self.domains)

    def allows_address(self, address: IPAddress) -> bool:
        """True when a call may connect to `address`: public, or in an allowed CIDR."""
        candidates = [address]
        inner = embedded_ipv4(address)
        if inner is not None:
            candidates.append(inner)
        if any(a in net for a in candidates for net in self.networks if a.version == net.version):
            return True
        return is_public(address)


def valid_host_name(name: str) -> bool:
    """RFC 1123 host name syntax (underscores tolerated, as service names use them)."""
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    return all(
        0 < len(label) <= 63
        and label.isascii()
        and all(c.isalnum() or c in "-_" for c in label)
        and not label.startswith("-")
        for label in labels
    )
