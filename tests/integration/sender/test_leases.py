"""Leases: taken back when their sender died, released when it stops, never sent past expiry."""

from __future__ import annotations

import asyncio

from mail_proxy_sender.delivery.lease_keeper import LeaseKeeper
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
        # A sender takes lapsed leases back after one lease of contact with Postgres.
        async with running_sender(world, lease_seconds=2.0):
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


async def test_a_slow_transaction_keeps_its_lease_and_is_sent_once(world: World) -> None:
    # The server takes almost 3 leases' time to accept; the sender's heartbeat keeps the lease
    # alive, so the second sender never takes the message while it is still being sent.
    sink = SmtpSink(delay_seconds=8.0)
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "slow"})
        async with running_sender(world, owner="first", lease_seconds=3.0, smtp_timeout_seconds=30):
            await eventually(lambda: _attempted(sink, 1))
            async with running_sender(
                world, owner="second", lease_seconds=3.0, smtp_timeout_seconds=30
            ):
                await eventually(lambda: _state_is(world, "slow", "sent"), timeout=60)
                await asyncio.sleep(2.0)  # a taken-back copy would be attempted by now
    assert len(sink.attempted) == 1
    assert sink.mail_ids() == ["slow"]
    events = [e["event_type"] for e in await world.events("acme", "slow")]
    assert events == ["sent"]


async def test_leases_are_renewed_while_held_and_a_lost_one_is_never_started(
    world: World,
) -> None:
    sink = SmtpSink(delay_seconds=3.0)
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "busy"}, {"id": "waiting"})
        async with running_sender(
            world, owner="keeper", lease_seconds=1.5, smtp_connections_per_account=1
        ):
            await eventually(lambda: _attempted(sink, 1))
            first = await world.fetchval(
                "SELECT lease_until FROM messages WHERE id = 'waiting' AND lease_owner = 'keeper'"
            )
            assert first is not None  # leased and queued behind the slow send
            await asyncio.sleep(1.0)
            renewed = await world.fetchval("SELECT lease_until FROM messages WHERE id = 'waiting'")
            assert renewed > first  # the heartbeat extended it
            # Another sender takes the queued message back (as if this one had stalled): the
            # next renewal notices and this sender never starts it.
            await world.execute(
                "UPDATE messages SET lease_owner = 'thief', "
                "lease_until = now() + interval '1 hour' WHERE id = 'waiting'"
            )
            await eventually(lambda: _state_is(world, "busy", "sent"), timeout=20)
            await asyncio.sleep(1.5)
    assert sink.mail_ids() == ["busy"]
    row = await world.message("acme", "waiting")
    assert (row["state"], row["lease_owner"]) == ("sending", "thief")


async def test_a_slow_answer_to_the_end_of_data_is_waited_for_not_sent_again(world: World) -> None:
    # The server scans content for longer than the per-command timeout before it answers the end
    # of DATA; RFC 5321 4.5.3.2.6 asks clients to wait 10 minutes there. Giving up sooner would
    # re-send mail the server had already taken.
    sink = SmtpSink(delay_seconds=3.0)
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "scanned"})
        async with running_sender(world, smtp_timeout_seconds=1.0):
            await eventually(lambda: _state_is(world, "scanned", "sent"), timeout=30)
    assert len(sink.attempted) == 1


async def _state_is(world: World, message_id: str, state: str) -> bool:
    return (await world.message("acme", message_id))["state"] == state


async def _attempted(sink: SmtpSink, count: int) -> bool:
    return len(sink.attempted) >= count


async def test_lapsed_leases_are_taken_back_only_after_a_lease_of_continuous_contact(
    world: World,
) -> None:
    keeper = LeaseKeeper(world.pool, owner="me", lease_seconds=1.0)
    assert not keeper.may_rescue()  # never in contact yet
    assert await keeper.renew()
    assert not keeper.may_rescue()  # just started: owners get a lease to come back first
    for _ in range(4):
        await asyncio.sleep(0.3)
        assert await keeper.renew()
    assert keeper.may_rescue()
    await asyncio.sleep(0.7)  # a heartbeat gap longer than half a lease (a stall, an outage)
    assert await keeper.renew()
    assert not keeper.may_rescue()
    for _ in range(4):
        await asyncio.sleep(0.3)
        assert await keeper.renew()
    assert keeper.may_rescue()
    await world.pool.close()  # Postgres out of reach: the renewal fails
    assert not await keeper.renew()
    assert not keeper.may_rescue()
