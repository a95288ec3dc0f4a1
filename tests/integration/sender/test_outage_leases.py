"""Postgres away longer than the lease, with two senders: an accepted message whose `sent` is
still held in memory is never taken back and sent again by the other sender, and a leased
message not started yet is sent by its sender once Postgres is back, without being taken
back (issue 13 item 3, see `lease_keeper`)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import asyncpg
import pytest

from mail_proxy.db.migrate import migrate
from mail_proxy.db.pool import connect, create_pool
from mail_proxy.db.rescue import LEASE_EXPIRED
from mail_proxy.encryption import SecretBox, decode_key, generate_key
from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.servers import SmtpSink, smtp_server
from tests.integration.sender.stoppable_postgres import StoppablePostgres, stoppable_pg

pytestmark = pytest.mark.slow
__all__ = ["stoppable_pg"]  # the fixture
LEASE = 2.0
COUNT = 12


async def _all_sent(world: World) -> bool:
    try:
        return await world.fetchval("SELECT count(*) FROM messages WHERE state = 'sent'") == COUNT
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


@pytest.mark.timeout(180)
async def test_an_outage_longer_than_the_lease_sends_nothing_twice(
    stoppable_pg: StoppablePostgres,
) -> None:
    dsn = stoppable_pg.dsn
    conn = await connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    pool = await create_pool(dsn, max_size=3)
    key = generate_key()
    world = World(dsn, pool, SecretBox(decode_key(key)), key)
    sink = SmtpSink(gate=asyncio.Event(), delay_seconds=0.5)
    try:
        async with smtp_server(sink) as port:
            await world.tenant("acme")
            # Two connections: two messages wait in DATA, the others leased behind them.
            await world.account("acme", "smtp1", port, max_connections=2)
            await world.enqueue("acme", "smtp1", *({"id": f"m{i:02d}"} for i in range(COUNT)))
            async with (
                running_sender(world, owner="one", lease_seconds=LEASE),
                running_sender(world, owner="two", lease_seconds=LEASE),
            ):

                async def in_data() -> bool:
                    return len(sink.attempted) >= 2

                async def all_leased() -> bool:
                    states = await world.states("acme")
                    return list(states.values()) == ["sending"] * COUNT

                await eventually(in_data, timeout=30)
                await eventually(all_leased, timeout=30)
                stoppable_pg.stop()
                sink.gate.set()  # type: ignore[union-attr]

                # Leases run out while Postgres is away: what was accepted has its `sent` held
                # by its sender, the rest waits unsent.
                await asyncio.sleep(3 * LEASE)
                assert COUNT > len(sink.attempted) >= 2
                stoppable_pg.start()
                restarted = time.monotonic()
                await eventually(lambda: _all_sent(world), timeout=60, every=0.2)
                # Sent by their own sender as soon as it renewed, not a lease later.
                assert time.monotonic() - restarted < LEASE + 5
                # Long enough for any rescuer to have taken a lapsed lease back and resent it.
                await asyncio.sleep(3 * LEASE)
            rescued = await world.fetchval(
                "SELECT count(*) FROM message_events WHERE description = $1", LEASE_EXPIRED
            )
    finally:
        await pool.close()
    counts = Counter(sink.mail_ids())
    assert set(counts) == {f"m{i:02d}" for i in range(COUNT)}
    assert [m for m, n in counts.items() if n > 1] == []
    assert rescued == 0  # no live sender's lease was taken back
