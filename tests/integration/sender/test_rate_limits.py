"""Rate limits per (tenant, account), counted in Postgres, checked before attachments."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from tests.integration.sender.conftest import World, counter, eventually, running_sender
from tests.integration.sender.servers import HttpApp, SmtpSink, http_server, smtp_server

LABELS = {
    "tenant_id": "acme",
    "tenant_name": "acme",
    "account_id": "smtp1",
    "account_name": "smtp1",
}


async def _count(world: World, state: str) -> int:
    return int(await world.fetchval("SELECT count(*) FROM messages WHERE state = $1", state))


async def test_over_the_limit_is_deferred_until_a_slot_frees(world: World) -> None:
    async def file(_: Request) -> Response:
        return Response(b"data")

    sink = SmtpSink()
    async with smtp_server(sink) as port, http_server(HttpApp({"/f.txt": file})) as files:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port, limit_per_minute=3)
        attachment = {"filename": "f.txt", "storage_path": f"{files.url}/f.txt"}
        await world.enqueue(
            "acme", "smtp1", *({"id": f"m{i}", "attachments": [attachment]} for i in range(5))
        )
        async with running_sender(world) as ctx:
            await eventually(lambda: _both(world, sent=3, deferred=2))
            started = time.time()
            assert counter(ctx, "gmp_rate_limited_total", **LABELS) == 2
            assert counter(ctx, "gmp_deferred_total", **LABELS) == 2
        # The deferred ones never had their attachment fetched.
        assert len(files.hits("/f.txt")) == 3

    first_sent = await world.fetchval("SELECT min(sent_at) FROM send_log")
    deferred = [e for e in await world.events("acme") if e["event_type"] == "deferred"]
    assert len(deferred) == 2
    for event in deferred:
        assert event["description"] == "rate_limit"
        # A slot frees when the oldest send leaves the sliding minute.
        assert int(first_sent) + 59 <= event["metadata"]["deferred_ts"] <= started + 61
    assert len(sink.received) == 3


async def test_reject_behaviour_fails_what_is_over_the_limit(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port, limit_per_minute=2, limit_behavior="reject")
        await world.enqueue("acme", "smtp1", *({"id": f"m{i}"} for i in range(5)))
        async with running_sender(world) as ctx:
            await eventually(lambda: _both(world, sent=2, error=3))
            assert counter(ctx, "gmp_rate_limited_total", **LABELS) == 3
            assert counter(ctx, "gmp_errors_total", **LABELS) == 0
    errors = [e for e in await world.events("acme") if e["event_type"] == "error"]
    assert {e["description"] for e in errors} == {"rate_limit_exceeded"}
    assert len(sink.received) == 2


async def test_limits_survive_message_cleanup(world: World) -> None:
    """The budget comes from the send log, not from message rows that retention may delete."""
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port, limit_per_hour=2)
        await world.enqueue("acme", "smtp1", {"id": "a"}, {"id": "b"})
        async with running_sender(world):
            await eventually(lambda: _both(world, sent=2))
        await world.execute("DELETE FROM messages")
        await world.enqueue("acme", "smtp1", {"id": "c"})
        async with running_sender(world):
            await eventually(lambda: _both(world, deferred=1))
    assert len(sink.received) == 2


async def test_tenant_limit_spans_its_accounts(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme", rate_limits={"hourly": 3})
        await world.account("acme", "smtp1", port)
        await world.account("acme", "smtp2", port)
        await world.enqueue("acme", "smtp1", *({"id": f"a{i}"} for i in range(3)))
        await world.enqueue("acme", "smtp2", *({"id": f"b{i}"} for i in range(3)))
        async with running_sender(world):
            await eventually(lambda: _both(world, sent=3, deferred=3))
    assert len(sink.received) == 3


async def _both(world: World, **counts: int) -> bool:
    for state, count in counts.items():
        if await _count(world, state) != count:
            return False
    return True
