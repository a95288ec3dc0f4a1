"""Each failure path: what is retried, when, and what ends in `error` (SPEC section 3)."""

from __future__ import annotations

import time

from tests.integration.sender.conftest import World, counter, eventually, running_sender
from tests.integration.sender.servers import SmtpSink, smtp_server

LABELS = {
    "tenant_id": "acme",
    "tenant_name": "acme",
    "account_id": "smtp1",
    "account_name": "smtp1",
}


async def _state(world: World, message_id: str = "m1") -> str:
    return str((await world.message("acme", message_id))["state"])


async def _setup(world: World, port: int, **account: object) -> None:
    await world.tenant("acme")
    await world.account("acme", "smtp1", port, **account)


async def test_4xx_is_deferred_by_the_first_delay_with_jitter(world: World) -> None:
    sink = SmtpSink(reply="450 4.2.0 Mailbox busy")
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        before = time.time()
        async with running_sender(world, retry_jitter_ratio=0.1) as ctx:
            await eventually(lambda: _is(world, "deferred"))
            assert counter(ctx, "gmp_deferred_total", **LABELS) == 1
    row = await world.message("acme", "m1")
    assert before + 54 - 1 <= row["deferred_ts"] <= time.time() + 66
    [event] = await world.events("acme", "m1")
    assert event["event_type"] == "deferred"
    assert event["description"] == "4.2.0 Mailbox busy (SMTP 450)"
    assert event["metadata"]["deferred_ts"] == row["deferred_ts"]
    assert event["metadata"]["retry_count"] == 1
    assert event["metadata"]["smtp_code"] == 450


async def test_5xx_is_an_error_at_once(world: World) -> None:
    sink = SmtpSink(reply="550 5.7.1 Message rejected")
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(world) as ctx:
            await eventually(lambda: _is(world, "error"))
            assert counter(ctx, "gmp_errors_total", **LABELS) == 1
    row = await world.message("acme", "m1")
    assert row["error"] == "5.7.1 Message rejected (SMTP 550)"
    assert row["smtp_ts"] == row["error_ts"] is not None
    [event] = await world.events("acme", "m1")
    assert (event["event_type"], event["description"]) == ("error", row["error"])
    assert len(sink.attempted) == 1


async def test_all_recipients_refused_with_5xx_is_an_error(world: World) -> None:
    sink = SmtpSink(rcpt_reply="550 5.1.1 No such user")
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(world):
            await eventually(lambda: _is(world, "error"))
    row = await world.message("acme", "m1")
    assert row["error"].startswith("All recipients refused: rcpt@example.org: 550")


async def test_dropped_connection_is_retried(world: World) -> None:
    sink = SmtpSink(drop=True)
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(world, retry_delays_seconds=(1,), retry_jitter_ratio=0.0):
            await eventually(lambda: _is(world, "deferred"))
            sink.drop = False
            await eventually(lambda: _is(world, "sent"))
    assert [e["event_type"] for e in await world.events("acme", "m1")] == ["deferred", "sent"]


async def test_slow_server_times_out_and_is_retried(world: World) -> None:
    sink = SmtpSink(delay_seconds=3.0)
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        # The end-of-DATA answer has its own, longer wait (RFC 5321 4.5.3.2.6): shortened here too.
        async with running_sender(world, smtp_timeout_seconds=0.5, smtp_data_timeout_seconds=0.5):
            await eventually(lambda: _is(world, "deferred"))
    [event] = await world.events("acme", "m1")
    assert event["description"].startswith("Timeout")


async def test_retries_exhausted_end_in_error(world: World) -> None:
    sink = SmtpSink(reply="452 4.3.1 Insufficient storage")
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(
            world, max_retries=2, retry_delays_seconds=(1,), retry_jitter_ratio=0.0
        ):
            await eventually(lambda: _is(world, "error"), timeout=30)
    row = await world.message("acme", "m1")
    assert row["attempts"] == 3
    assert row["error"] == "Max retries (2) exceeded: 4.3.1 Insufficient storage (SMTP 452)"
    kinds = [e["event_type"] for e in await world.events("acme", "m1")]
    assert kinds == ["deferred", "deferred", "error"]
    assert len(sink.attempted) == 3


async def test_authentication_with_the_decrypted_password(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink, credentials=("user", "s3cret")) as port:
        await _setup(world, port, username="user", password="s3cret")
        stored = await world.fetchval("SELECT password FROM accounts")
        assert stored.startswith("ENC:")
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(world):
            await eventually(lambda: _is(world, "sent"))


async def test_throttling_answer_backs_the_account_off(world: World) -> None:
    sink = SmtpSink(reply="421 4.7.0 Too many messages, slow down")
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", *({"id": f"m{i}"} for i in range(5)))
        async with running_sender(world, smtp_connections_per_account=1, throttle_base_seconds=60):
            await eventually(lambda: _count(world, "deferred", 1))
            await eventually(lambda: _count(world, "pending", 4))
    # One attempt, then the account rests: the others were given back untried.
    assert len(sink.attempted) == 1
    account = await world.fetchval(
        "SELECT throttle_until - extract(epoch FROM now()) FROM accounts"
    )
    assert 50 < account <= 60
    assert await world.fetchval("SELECT throttle_level FROM accounts") == 1
    untried = await world.fetchval(
        "SELECT count(*) FROM messages WHERE state = 'pending' AND attempts = 0"
    )
    assert untried == 4


async def test_a_server_refusing_sessions_never_uses_up_retries(world: World) -> None:
    # A relay in maintenance answers 421 at the greeting more times than max_retries: the
    # account rests each time, the message waits untried, and is sent when the relay is back.
    sink = SmtpSink(
        hangup_at="connect", hangup_reply="421 4.3.2 Service not available", hangups_left=4
    )
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(
            world, max_retries=2, throttle_base_seconds=0.2, throttle_max_seconds=0.5
        ):
            await eventually(lambda: _is(world, "sent"))
    assert sink.hangups_left == 0
    assert await world.fetchval("SELECT attempts FROM messages") == 1
    events = await world.fetchval(
        "SELECT count(*) FROM message_events WHERE event_type IN ('deferred', 'error')"
    )
    assert events == 0


async def _is(world: World, state: str, message_id: str = "m1") -> bool:
    return await _state(world, message_id) == state


async def _count(world: World, state: str, count: int) -> bool:
    return await world.fetchval("SELECT count(*) FROM messages WHERE state = $1", state) == count
