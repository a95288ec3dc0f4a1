"""A tenant's IMAP mailbox host is vetted like every outbound destination (issue 9): resolved
once, connected to the vetted address, TLS checked against the host name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mail_proxy.outbound import OutboundPolicy
from mail_proxy_sender.inbound.imap_client import ImapError, ImapSession, ImapTarget
from mail_proxy_sender.outbound.destinations import REFUSED_REASON
from tests.integration.sender.dovecot import PASSWORD, Dovecot, dovecot_server

ALLOW_LOOPBACK = OutboundPolicy.parse(["127.0.0.1/32"])


@pytest.fixture(scope="module")
def imap() -> Iterator[Dovecot]:
    with dovecot_server(["box"]) as server:
        yield server


class StubResolver:
    def __init__(self, answer: list[str]) -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return self.answer


def _target(imap: Dovecot, host: str, **fields: object) -> ImapTarget:
    base: dict[str, object] = {
        "host": host,
        "port": imap.ssl_port,
        "user": "box",
        "password": PASSWORD,
        "security": "ssl",
        "timeout_seconds": 10.0,
        "ca_file": imap.ca_file,
    }
    return ImapTarget(**{**base, **fields})  # type: ignore[arg-type]


async def test_a_tenant_mailbox_on_loopback_is_refused_with_a_fixed_reason(imap: Dovecot) -> None:
    for host in ("127.0.0.1", "localhost"):
        with pytest.raises(ImapError) as caught:
            async with ImapSession.open(_target(imap, host, policy=OutboundPolicy())):
                pass
        assert str(caught.value) == f"IMAP host {host}: {REFUSED_REASON}"


async def test_an_allowed_host_is_reached_on_the_vetted_address_with_its_name_for_tls(
    imap: Dovecot,
) -> None:
    # "localhost" is on the server's certificate; the stub is the only resolver asked.
    resolver = StubResolver(["127.0.0.1"])
    target = _target(imap, "localhost", policy=ALLOW_LOOPBACK, resolver=resolver)
    async with ImapSession.open(target) as session:
        assert session.uidvalidity > 0
    assert resolver.asked == ["localhost"]


async def test_the_certificate_is_checked_against_the_name_not_the_address(imap: Dovecot) -> None:
    # mail.test resolves (for this test) to 127.0.0.1, which the certificate names; the name
    # does not match, so the TLS check must fail: it is made on the host name.
    target = _target(imap, "mail.test", policy=ALLOW_LOOPBACK, resolver=StubResolver(["127.0.0.1"]))
    with pytest.raises(ImapError, match=r"CERTIFICATE_VERIFY_FAILED|certificate|hostname"):
        async with ImapSession.open(target):
            pass


async def test_a_private_answer_is_refused_before_connecting(imap: Dovecot) -> None:
    target = _target(imap, "mail.test", policy=ALLOW_LOOPBACK, resolver=StubResolver(["10.9.8.7"]))
    with pytest.raises(ImapError) as caught:
        async with ImapSession.open(target):
            pass
    assert "10.9.8.7" not in str(caught.value)
    assert REFUSED_REASON in str(caught.value)
