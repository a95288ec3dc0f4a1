"""SMTP account hosts are a tenant's choice: vetted like every outbound destination (issue 9,
SPEC section 13). Resolved once, judged on every address, connected to the vetted address (no
second DNS query), TLS still checked against the host name, one fixed reason when refused."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import trustme

from mail_proxy.outbound import OutboundPolicy
from mail_proxy_sender.delivery.failures import AccountFailure
from mail_proxy_sender.delivery.smtp_client import SmtpConnection
from mail_proxy_sender.delivery.smtp_target import SmtpOptions, SmtpTarget
from mail_proxy_sender.outbound.destinations import REFUSED_REASON
from tests.conftest import free_port
from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.servers import SmtpSink, smtp_server

PROBE = {"account_probe_base_seconds": 1.0, "account_probe_max_seconds": 2.0}


async def _reasons(world: World) -> dict[str, str | None]:
    async with world.pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, health, health_reason FROM accounts")
    return {r["id"]: r["health_reason"] for r in rows if r["health"] == "unhealthy"}


async def test_an_account_on_loopback_is_refused_without_connecting(world: World) -> None:
    """Open port, closed port, a name resolving to loopback: one fixed reason, no connection,
    so the account's health cannot be used as a port scanner."""
    sink = SmtpSink()
    async with smtp_server(sink) as open_port:
        await world.tenant("acme")
        await world.account("acme", "open", open_port)
        await world.account("acme", "closed", free_port())
        await world.account("acme", "named", open_port, host="localhost")
        for account in ("open", "closed", "named"):
            await world.enqueue("acme", account, {"id": f"m-{account}"})
        async with running_sender(world, outbound_allow=(), **PROBE):

            async def all_held() -> bool:
                return len(await _reasons(world)) == 3

            await eventually(all_held)
    reasons = await _reasons(world)
    assert sink.connections == 0
    assert sink.received == []
    assert reasons["open"] == reasons["closed"] == f"SMTP host 127.0.0.1: {REFUSED_REASON}"
    assert reasons["named"] == f"SMTP host localhost: {REFUSED_REASON}"
    states = await world.states("acme")
    assert set(states.values()) <= {"pending", "deferred"}, states  # held, not failed


async def test_an_allow_listed_account_host_is_reached(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port, host="localhost")
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(world, outbound_allow=("localhost",)):

            async def sent() -> bool:
                return (await world.states("acme")) == {"m1": "sent"}

            await eventually(sent)
    assert len(sink.received) == 1


# The connection itself, with a resolver of the test's own: names under .test never resolve
# in the system's DNS, so a connection that works proves the vetted address was used.


class StubResolver:
    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def _target(host: str, port: int, *, use_tls: bool | None = False) -> SmtpTarget:
    return SmtpTarget(host, port, None, None, use_tls, True, 300.0)


def _options(policy: OutboundPolicy, resolver: StubResolver, ca: Path | None = None) -> SmtpOptions:
    return SmtpOptions(5.0, (465,), ca, "client.test", policy=policy, resolver=resolver)


async def _send(conn: SmtpConnection) -> None:
    await conn.open()
    try:
        result = await conn.transaction(
            sender="a@example.org",
            recipients=["b@example.org"],
            data=b"Subject: x\r\n\r\nx\r\n",
            smtputf8=False,
        )
        assert result.ended is None
        assert result.answers["b@example.org"].code == 250
    finally:
        await conn.close()


async def test_a_name_resolving_to_a_private_address_is_refused_before_connecting() -> None:
    for answer in (["10.1.2.3"], ["169.254.169.254"], ["::ffff:127.0.0.1"], ["fd00::1"]):
        resolver = StubResolver(answer)
        conn = SmtpConnection(_target("relay.test", 25), _options(OutboundPolicy(), resolver))
        started = asyncio.get_running_loop().time()
        with pytest.raises(AccountFailure) as caught:
            await conn.open()
        assert caught.value.reason == f"SMTP host relay.test: {REFUSED_REASON}"
        assert answer[0] not in caught.value.reason
        assert asyncio.get_running_loop().time() - started < 1.0  # no connect attempt
        assert resolver.asked == [("relay.test", 25)]


async def test_only_allowed_addresses_of_a_mixed_answer_are_used() -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        # 10.1.2.3 is refused (not in the allow-list); 127.0.0.1 is allowed and used.
        resolver = StubResolver(["10.1.2.3", "127.0.0.1"])
        policy = OutboundPolicy.parse(["127.0.0.1/32"])
        await _send(SmtpConnection(_target("relay.test", port), _options(policy, resolver)))
    assert len(sink.received) == 1
    assert resolver.asked == [("relay.test", port)]  # one DNS query, the connection used it


async def test_rebinding_is_judged_on_the_answer_used() -> None:
    """A name that answers an allowed address, then a refused one: each connection uses the
    answer it was vetted on, so the second is refused without reaching anything."""
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        resolver = StubResolver(["127.0.0.1"], ["127.0.0.2"])
        policy = OutboundPolicy.parse(["127.0.0.1/32"])
        await _send(SmtpConnection(_target("relay.test", port), _options(policy, resolver)))
        with pytest.raises(AccountFailure, match="not allowed"):
            await SmtpConnection(_target("relay.test", port), _options(policy, resolver)).open()
    assert sink.connections == 1


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _server_tls(ca: trustme.CA, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return context


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
async def test_tls_is_verified_against_the_host_name_not_the_address(
    ca: trustme.CA, tmp_path: Path, implicit: bool
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    policy = OutboundPolicy.parse(["127.0.0.1/32"])
    for cert_name, works in (("relay.test", True), ("other.test", False)):
        sink = SmtpSink()
        tls = _server_tls(ca, cert_name)
        server = (
            smtp_server(sink, implicit_tls=tls) if implicit else smtp_server(sink, starttls=tls)
        )
        async with server as port:
            options = SmtpOptions(
                5.0,
                (port,) if implicit else (),
                ca_file,
                "client.test",
                policy=policy,
                resolver=StubResolver(["127.0.0.1"]),
            )
            conn = SmtpConnection(_target("relay.test", port, use_tls=True), options)
            if works:
                await _send(conn)
                assert sink.received[0].tls
            else:
                with pytest.raises(AccountFailure, match="does not match the host name"):
                    await conn.open()


async def test_odd_host_spellings_are_judged_by_what_they_resolve_to() -> None:
    """IP spellings resolve to the address they mean; an IDN name is asked in its ASCII form;
    what is not a host name at all is refused without a DNS query."""
    for host in ("127.1", "0", "[::1]", "::ffff:127.0.0.1", "fe80::1%lo", "2130706433"):
        conn = SmtpConnection(_target(host, 25), SmtpOptions(5.0, (465,), None, "client.test"))
        with pytest.raises(AccountFailure, match="destination refused"):
            await conn.open()
    resolver = StubResolver(["10.0.0.1"])
    options = _options(OutboundPolicy(), resolver)
    with pytest.raises(AccountFailure, match="destination refused"):
        await SmtpConnection(_target("bücher.test", 25), options).open()
    assert resolver.asked == [("xn--bcher-kva.test", 25)]
    for host in ("a b.test", "x" * 300, "bad_/name", "\u0000.test"):
        with pytest.raises(AccountFailure, match="destination refused"):
            await SmtpConnection(_target(host, 25), options).open()
    assert len(resolver.asked) == 1
