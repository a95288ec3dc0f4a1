"""Which addresses a call on a tenant's behalf may reach (SSRF guard policy, SPEC section 13)."""

from __future__ import annotations

import ipaddress

import pytest

from mail_proxy.config import Settings
from mail_proxy.errors import ConfigError
from mail_proxy.outbound import OutboundPolicy, is_public

NOT_PUBLIC = [
    "127.0.0.1",
    "127.255.0.9",
    "0.0.0.0",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",  # carrier-grade NAT (RFC 6598)
    "169.254.169.254",  # cloud metadata
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.18.0.1",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "ff02::1",
    "ff0e::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "2001:db8::1",
]
PUBLIC = [
    "1.2.3.4",
    "8.8.8.8",
    "93.184.216.34",
    "2606:4700::1111",
    "::ffff:8.8.8.8",
    "2002:808:808::",
]


@pytest.mark.parametrize("text", NOT_PUBLIC)
def test_non_public_addresses_are_refused(text: str) -> None:
    assert not is_public(ipaddress.ip_address(text))
    assert not OutboundPolicy().allows_address(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_are_allowed(text: str) -> None:
    assert OutboundPolicy().allows_address(ipaddress.ip_address(text))


def test_allow_list_cidrs_cover_mapped_forms() -> None:
    policy = OutboundPolicy.parse(["127.0.0.0/8", "10.1.0.0/16", "::1"])
    for text in ("127.0.0.1", "::ffff:127.0.0.1", "10.1.9.9", "::1"):
        assert policy.allows_address(ipaddress.ip_address(text)), text
    for text in ("10.2.0.1", "169.254.169.254", "::ffff:10.2.0.1"):
        assert not policy.allows_address(ipaddress.ip_address(text)), text


def test_allow_list_host_names_and_domains() -> None:
    policy = OutboundPolicy.parse(["App.Default.Svc", "*.svc.cluster.local"])
    assert policy.allows_host("app.default.svc.")
    assert policy.allows_host("billing.ns.svc.cluster.local")
    assert not policy.allows_host("svc.cluster.local.evil.com")
    assert not policy.allows_host("evilsvc.cluster.local")
    assert not policy.allows_host("other.default.svc")


@pytest.mark.parametrize(
    "entry", ["not a host", "10.0.0.0/33", "-bad.example", "a..b", "é.example"]
)
def test_bad_allow_list_entries_are_refused_naming_them(entry: str) -> None:
    with pytest.raises(ConfigError, match="GMP_OUTBOUND_ALLOW"):
        OutboundPolicy.parse([entry])


def test_settings_read_the_allow_list_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GMP_OUTBOUND_ALLOW", "10.0.0.0/8, app.internal")
    settings = Settings()
    assert settings.outbound_allow == ("10.0.0.0/8", "app.internal")
    assert settings.outbound_policy.allows_host("app.internal")
    monkeypatch.setenv("GMP_OUTBOUND_ALLOW", "10.0.0.0/99")
    with pytest.raises(ValueError, match="GMP_OUTBOUND_ALLOW"):
        Settings()


def test_unset_allows_loopback_only_on_an_embedded_laptop_instance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loopback = ipaddress.ip_address("127.0.0.1")
    private = ipaddress.ip_address("10.0.0.1")
    monkeypatch.delenv("GMP_OUTBOUND_ALLOW", raising=False)
    monkeypatch.delenv("GMP_DATABASE_URL", raising=False)
    laptop = Settings()
    assert laptop.embedded
    assert laptop.outbound_policy.allows_address(loopback)
    assert laptop.outbound_policy.allows_host("localhost")
    assert not laptop.outbound_policy.allows_address(private)
    # Set, even empty, it is what the admin said.
    monkeypatch.setenv("GMP_OUTBOUND_ALLOW", "")
    assert not Settings().outbound_policy.allows_address(loopback)
    # A server (GMP_DATABASE_URL) never allows loopback by default.
    monkeypatch.delenv("GMP_OUTBOUND_ALLOW")
    monkeypatch.setenv("GMP_DATABASE_URL", "postgresql://u@db/mp")
    assert not Settings().outbound_policy.allows_address(loopback)
