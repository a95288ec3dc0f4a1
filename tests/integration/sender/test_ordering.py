"""Who goes first: priorities, fairness across tenants, suspension, schedules (SPEC section 3)."""

from __future__ import annotations

import asyncio
import time

from tests.integration.api.conftest import running_api
from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.servers import SmtpSink, smtp_server


async def _state(world: World, tenant_id: str, message_id: str) -> str:
    return str((await world.message(tenant_id, message_id))["state"])


async def test_a_huge_backlog_does_not_delay_another_tenant_by_more_than_one_batch(
    world: World,
) -> None:
    # A bounded pace (two connections, 5 ms per message) makes "ahead of it" count batches
    # leased before it, not how fast the big tenant's connections are.
    sink = SmtpSink(delay_seconds=0.005)
    async with smtp_server(sink) as port:
        await world.tenant("big")
        await world.tenant("small")
        await world.account("big", "smtp1", port)
        await world.account("small", "smtp1", port)
        await world.enqueue("big", "smtp1", *({"id": f"b{i:05d}"} for i in range(10_000)))
        async with running_sender(world, batch_size_per_account=50, smtp_connections_per_account=2):
            await eventually(lambda: _sent_count(world, 200), timeout=60)
            await world.enqueue("small", "smtp1", {"id": "s1"})
            queued_at = time.time()
            await eventually(lambda: _is_sent(world, "small", "s1"), timeout=60)
    small_at = next(r.accepted_at for r in sink.received if r.mail_id == "s1")
    ahead = [r for r in sink.received if queued_at < r.accepted_at < small_at]
    assert len(ahead) <= 50, len(ahead)


async def test_priority_zero_does_not_wait_behind_a_batch_of_lower_priorities(
    world: World,
) -> None:
    sink = SmtpSink(delay_seconds=0.02)
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue(
            "acme", "smtp1", *({"id": f"low{i}", "priority": 3} for i in range(300))
        )
        async with running_sender(world, batch_size_per_account=50, smtp_connections_per_account=2):
            await eventually(lambda: _sent_count(world, 20))
            await world.enqueue("acme", "smtp1", {"id": "urgent", "priority": 0})
            queued_at = time.time()
            await eventually(lambda: _is_sent(world, "acme", "urgent"))
    urgent_at = next(r.accepted_at for r in sink.received if r.mail_id == "urgent")
    overtaking = [
        r for r in sink.received if r.mail_id != "urgent" and queued_at < r.accepted_at < urgent_at
    ]
    assert len(overtaking) < 50, len(overtaking)


async def test_priorities_go_in_order_then_fifo(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        # One call each: arrival order is the order of the calls.
        for message_id, priority in (("p3a", 3), ("p1a", 1), ("p3b", 3), ("p1b", 1), ("p2a", 2)):
            await world.enqueue("acme", "smtp1", {"id": message_id, "priority": priority})
        async with running_sender(world, smtp_connections_per_account=1):
            await eventually(lambda: _sent_count(world, 5))
    assert sink.mail_ids() == ["p1a", "p1b", "p2a", "p3a", "p3b"]


async def test_suspend_and_activate_through_the_api(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port, running_api(world.dsn, key=None) as api:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        r = await api.client.post(
            "/commands/suspend",
            params={"tenant_id": "acme", "batch_code": "spring"},
            headers=api.admin(),
        )
        assert r.status_code == 200, r.text
        await world.enqueue(
            "acme",
            "smtp1",
            {"id": "held", "batch_code": "spring"},
            {"id": "free", "batch_code": "summer"},
            {"id": "plain"},
        )
        async with running_sender(world, send_loop_interval_seconds=30):
            await eventually(lambda: _sent_count(world, 2))
            await asyncio.sleep(0.5)
            assert await _state(world, "acme", "held") == "pending"
            # activate notifies every sender: no polling needed (the interval is 30 s here)
            r = await api.client.post(
                "/commands/activate",
                params={"tenant_id": "acme", "batch_code": "spring"},
                headers=api.admin(),
            )
            assert r.status_code == 200, r.text
            await eventually(lambda: _is_sent(world, "acme", "held"), timeout=10)
    assert sorted(sink.mail_ids()) == ["free", "held", "plain"]


async def test_full_suspension_holds_everything(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.tenant("other")
        await world.account("acme", "smtp1", port)
        await world.account("other", "smtp1", port)
        await world.execute("UPDATE tenants SET suspended_batches = '*' WHERE id = 'acme'")
        await world.enqueue("acme", "smtp1", {"id": "a1"}, {"id": "a2", "batch_code": "x"})
        await world.enqueue("other", "smtp1", {"id": "o1"})
        async with running_sender(world):
            await eventually(lambda: _is_sent(world, "other", "o1"))
            await asyncio.sleep(0.5)
    assert sink.mail_ids() == ["o1"]
    assert set((await world.states("acme")).values()) == {"pending"}


async def test_inactive_tenant_sends_nothing(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme", active=False)
        await world.tenant("other")
        await world.account("acme", "smtp1", port)
        await world.account("other", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "a1"})
        await world.enqueue("other", "smtp1", {"id": "o1"})
        async with running_sender(world):
            await eventually(lambda: _is_sent(world, "other", "o1"))
            await asyncio.sleep(0.5)
    assert sink.mail_ids() == ["o1"]


async def test_scheduled_message_waits_for_its_time(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        not_before = int(time.time()) + 2
        await world.enqueue("acme", "smtp1", {"id": "later", "deferred_ts": not_before})
        assert await _state(world, "acme", "later") == "deferred"
        async with running_sender(world):
            await eventually(lambda: _is_sent(world, "acme", "later"))
    assert sink.received[0].accepted_at >= not_before


async def _is_sent(world: World, tenant_id: str, message_id: str) -> bool:
    return await _state(world, tenant_id, message_id) == "sent"


async def _sent_count(world: World, count: int) -> bool:
    return int(await world.fetchval("SELECT count(*) FROM messages WHERE state = 'sent'")) >= count
