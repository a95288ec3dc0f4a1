"""Leases: taken back when their sender died, released when it stops, never sent past expiry."""

from __future__ import annotations

import asyncio

from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.servers import SmtpSink, smtp_server


async def test_a_dead_senders_expired_lease_is_taken_back(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "orphan"}, {"id": "held"})
        await world.execute(
            "UPDATE messages SET state = 'sending', lease_owner = 'dead-1', attempts = 1, "
            "lease_until = now() - interval '1 second' WHERE id = 'orphan'"
        )
        await world.execute(
            "UPDATE messages SET state = 'sending', lease_owner = 'alive-1', attempts = 1, "
            "lease_until = now() + interval '1 hour' WHERE id = 'held'"
        )
        async with running_sender(world):
            await eventually(lambda: _state_is(world, "orphan", "sent"))
            await asyncio.sleep(0.5)
    assert sink.mail_ids() == ["orphan"]  # a live lease is left alone
    held = await world.message("acme", "held")
    assert (held["state"], held["lease_owner"]) == ("sending", "alive-1")


async def test_stop_finishes_sends_in_progress_and_releases_the_rest(world: World) -> None:
    sink = SmtpSink(delay_seconds=1.0)
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", *({"id": f"m{i}"} for i in range(20)))
        async with running_sender(world, smtp_connections_per_account=2, shutdown_grace_seconds=10):
            await eventually(lambda: _attempted(sink, 2))
        # leaving the block set the stop event, like SIGTERM
    states = await world.states("acme")
    assert sorted(states.values()).count("sent") == 2
    assert sorted(states.values()).count("pending") == 18
    assert (
        await world.fetchval(
            "SELECT count(*) FROM messages WHERE lease_owner IS NOT NULL OR "
            "(state = 'pending' AND attempts <> 0)"
        )
        == 0
    )
    assert len(sink.received) == 2


async def test_stop_after_the_grace_period_gives_back_cut_off_sends(world: World) -> None:
    sink = SmtpSink(delay_seconds=30.0)
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(world, shutdown_grace_seconds=0.5):
            await eventually(lambda: _attempted(sink, 1))
    assert (await world.message("acme", "m1"))["state"] == "pending"


async def _state_is(world: World, message_id: str, state: str) -> bool:
    return (await world.message("acme", message_id))["state"] == state


async def _attempted(sink: SmtpSink, count: int) -> bool:
    return len(sink.attempted) >= count
