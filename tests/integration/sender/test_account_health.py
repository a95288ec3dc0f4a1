"""Failures that belong to the account hold its queue, say what to fix, and clear by
themselves (issue 10 item 5; SPEC section 13)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mail_proxy.health import refresh_queue_gauges
from tests.conftest import free_port
from tests.integration.sender.conftest import World, counter, eventually, running_sender
from tests.integration.sender.servers import SmtpSink, smtp_server, untrusted_tls_context

PROBE = {"account_probe_base_seconds": 1.0, "account_probe_max_seconds": 2.0}


async def _health(world: World) -> dict[str, Any]:
    async with world.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT health, health_reason, health_failures, health_retry_at FROM accounts"
        )
    assert row is not None
    return dict(row.items())


async def _unhealthy(world: World) -> bool:
    return (await _health(world))["health"] == "unhealthy"


async def _all_sent(world: World, count: int) -> bool:
    states = await world.states("acme")
    return len(states) == count and all(s == "sent" for s in states.values())


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def _assert_held(world: World, count: int) -> None:
    """Nothing failed, no attempt counted: the messages just wait, and a message given back
    carries one `deferred` event naming the account's health reason (however many probes)."""
    async with world.pool.acquire() as conn:
        rows = await conn.fetch("SELECT state, attempts FROM messages ORDER BY id")
        events = await conn.fetch(
            "SELECT message_pk, event_type, description, metadata FROM message_events"
        )
        reason = await conn.fetchval("SELECT health_reason FROM accounts")
    assert len(rows) == count
    assert all(r["state"] in ("pending", "deferred", "sending") for r in rows)
    assert events, "a held message says why it waits"
    assert all(e["event_type"] == "deferred" for e in events)
    assert all(e["description"] == reason for e in events)
    assert all(_json(e["metadata"])["account_held"] is True for e in events)
    pks = [e["message_pk"] for e in events]
    assert len(pks) == len(set(pks)), "once per message per hold, not on every probe"


async def test_untrusted_certificate_holds_the_account_until_it_is_fixed(world: World) -> None:
    # The README's account (no use_tls) against a relay offering STARTTLS with a self-signed
    # certificate: before, every message failed for good with CERTIFICATE_VERIFY_FAILED.
    sink = SmtpSink()
    async with smtp_server(sink, starttls=untrusted_tls_context()) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port, use_tls=None)
        await world.enqueue("acme", "smtp1", *({"id": f"m{i}"} for i in range(5)))
        async with running_sender(world, **PROBE) as ctx:
            await eventually(lambda: _unhealthy(world))
            health = await _health(world)
            assert "certificate" in health["health_reason"]
            assert "not trusted" in health["health_reason"]
            assert "tls_verify false" in health["health_reason"]
            assert "GMP_SMTP_CA_FILE" in health["health_reason"]
            await refresh_queue_gauges(world.pool, ctx.metrics)
            assert counter(ctx, "gmp_account_healthy", tenant_id="acme", account_id="smtp1") == 0
            assert (
                counter(
                    ctx,
                    "gmp_errors_total",
                    tenant_id="acme",
                    tenant_name="acme",
                    account_id="smtp1",
                    account_name="smtp1",
                )
                == 0
            )
            await _assert_held(world, 5)
            # The operator follows the advice: sending resumes by itself at the next probe.
            await world.account("acme", "smtp1", port, use_tls=None, tls_verify=False)
            await eventually(lambda: _all_sent(world, 5))
            health = await _health(world)
            assert (health["health"], health["health_reason"]) == ("ok", None)
            await refresh_queue_gauges(world.pool, ctx.metrics)
            assert counter(ctx, "gmp_account_healthy", tenant_id="acme", account_id="smtp1") == 1
    assert len(sink.received) == 5
    assert all(r.tls for r in sink.received)
    assert await world.fetchval("SELECT max(attempts) FROM messages") == 1


async def test_wrong_password_holds_the_account_and_never_shows_the_password(
    world: World,
) -> None:
    sink = SmtpSink()
    async with smtp_server(sink, credentials=("user", "right")) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port, username="user", password="wrong-s3cret")
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(world, **PROBE):
            await eventually(lambda: _unhealthy(world))
            reason = (await _health(world))["health_reason"]
            assert "authentication failed" in reason
            assert "535" in reason
            assert "user and password" in reason
            assert "wrong-s3cret" not in reason
            await _assert_held(world, 1)
            await world.account("acme", "smtp1", port, username="user", password="right")
            await eventually(lambda: _all_sent(world, 1))
    assert (await _health(world))["health"] == "ok"


async def test_connection_refused_holds_the_account_until_the_server_is_back(
    world: World,
) -> None:
    port = free_port()
    await world.tenant("acme")
    await world.account("acme", "smtp1", port)
    await world.enqueue("acme", "smtp1", {"id": "m1"}, {"id": "m2"})
    async with running_sender(world, **PROBE):
        await eventually(lambda: _unhealthy(world))
        assert "connection refused" in (await _health(world))["health_reason"]
        await _assert_held(world, 2)
        # The probe backs off while the server stays away...
        await eventually(lambda: _failures_at_least(world, 3))
        await _assert_held(world, 2)  # still one `deferred` event per message, not per probe
        sink = SmtpSink()
        async with smtp_server(sink, port=port):
            # ...and the first probe that connects resumes sending.
            await eventually(lambda: _all_sent(world, 2))
    assert sorted(sink.mail_ids()) == ["m1", "m2"]


@pytest.mark.parametrize(
    ("account", "says"),
    [
        ({"host": "no-such-host.invalid"}, "not found"),
        ({"use_tls": True}, "does not offer STARTTLS, which the account requires"),
        # Credentials for a server offering no AUTH: said so, not blamed on STARTTLS.
        ({"username": "u", "password": "p"}, "offers no login (AUTH)"),
    ],
)
async def test_other_account_faults_hold_the_queue_with_a_reason(
    world: World, account: dict[str, Any], says: str
) -> None:
    sink = SmtpSink()  # offers no STARTTLS
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port, **account)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(world, **PROBE):
            await eventually(lambda: _unhealthy(world))
    assert says in (await _health(world))["health_reason"]
    await _assert_held(world, 1)
    assert sink.attempted == []


async def _failures_at_least(world: World, count: int) -> bool:
    return int((await _health(world))["health_failures"]) >= count
