"""The account's global SMTP connection cap: `max_connections`, counted in Postgres across every
sender process, never exceeded; a 421 at connect time lowers it for a while; within it, a
sender opens as many connections as it has ready work."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from mail_proxy.db.connection_slots import (
    DEMAND_SECONDS,
    acquire_slots,
    excess_slots,
    fair_share,
    release_slots,
)
from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.processes import sender_processes
from tests.integration.sender.servers import SmtpSink, smtp_server


async def _all_sent(world: World, count: int) -> bool:
    sent = await world.fetchval("SELECT count(*) FROM messages WHERE state = 'sent'")
    return int(sent) == count


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_three_senders_never_exceed_the_accounts_max_connections(
    world: World, tmp_path: Path
) -> None:
    sink = SmtpSink(delay_seconds=0.05)
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port, max_connections=5)
        async with sender_processes(
            3,
            dsn=world.dsn,
            key=world.key,
            log_dir=tmp_path,
            send_loop_interval_seconds=0.2,
            smtp_idle_seconds=0.5,  # connections come and go, so slots change hands often
        ) as procs:
            await world.enqueue("acme", "smtp1", *({"id": f"m{i:04d}"} for i in range(600)))
            await eventually(lambda: _all_sent(world, 600), timeout=200, every=0.2)
            per_process = [await p.sent_total() for p in procs]
            for proc in procs:
                await proc.stop()
    assert sink.peak_active <= 5
    assert sink.peak_active == 5  # the cap is used, not only respected
    assert sorted(set(sink.mail_ids())) == [f"m{i:04d}" for i in range(600)]
    assert sum(1 for n in per_process if n > 0) >= 2, per_process
    # Stopped senders leave no slot behind.
    assert await world.fetchval("SELECT coalesce(sum(slots), 0) FROM smtp_connection_slots") == 0


async def test_a_sender_opens_as_many_connections_as_it_has_ready_work(world: World) -> None:
    sink = SmtpSink(delay_seconds=0.5)
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port, max_connections=100)
        await world.enqueue("acme", "smtp1", *({"id": f"m{i}"} for i in range(40)))
        async with running_sender(world):
            await eventually(lambda: _all_sent(world, 40), timeout=30)
    assert sink.peak_active == 40


async def test_a_sender_without_a_connection_leaves_the_work_to_the_one_holding_them(
    world: World,
) -> None:
    # Connections stay open (idle) for 10 minutes: a sender that leased messages without a
    # connection of its own would hold them unsent that long.
    sink = SmtpSink(delay_seconds=0.01)
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port, max_connections=3)
        async with (
            running_sender(world, owner="one", smtp_idle_seconds=600),
            running_sender(world, owner="two", smtp_idle_seconds=600),
        ):
            for wave in range(3):
                ids = [{"id": f"w{wave}m{i}"} for i in range(60)]
                await world.enqueue("acme", "smtp1", *ids)
                await eventually(lambda n=60 * (wave + 1): _all_sent(world, n), timeout=30)
    assert sink.peak_active <= 3


async def test_slots_of_live_senders_count_and_of_dead_ones_do_not(world: World) -> None:
    sink = SmtpSink(delay_seconds=0.05)
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port, max_connections=5)
        pk = await world.fetchval("SELECT pk FROM accounts WHERE id = 'smtp1'")
        await world.execute(
            "INSERT INTO smtp_connection_slots (account_pk, owner, slots, lease_until) VALUES "
            "($1, 'alive', 4, now() + interval '1 hour'), "
            "($1, 'dead', 5, now() - interval '1 second')",
            pk,
        )
        await world.enqueue("acme", "smtp1", *({"id": f"m{i}"} for i in range(30)))
        async with running_sender(world):
            await eventually(lambda: _all_sent(world, 30), timeout=30)
    assert sink.peak_active == 1  # 5 - the live sender's 4; the dead sender's rows are ignored


async def test_a_421_at_connect_lowers_the_cap_and_loses_nothing(world: World) -> None:
    # The server takes 3 connections at once and answers 421 to a 4th.
    sink = SmtpSink(delay_seconds=0.1, connection_limit=3)
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port, max_connections=20)
        await world.enqueue("acme", "smtp1", *({"id": f"m{i:03d}"} for i in range(120)))
        async with running_sender(world):
            await eventually(lambda: _all_sent(world, 120), timeout=60)
            cap = await world.rows(
                "SELECT connection_cap, connection_cap_until > extract(epoch FROM now()) AS live "
                "FROM accounts WHERE id = 'smtp1'"
            )
    assert sink.refused_connections > 0
    assert cap[0]["connection_cap"] <= 3
    assert cap[0]["live"]
    assert sorted(sink.mail_ids()) == [f"m{i:03d}" for i in range(120)]
    events = {e["event_type"] for e in await world.events("acme")}
    assert events == {"sent"}  # nothing was deferred or failed because of the refusals


async def test_a_waiting_sender_gets_a_fair_share_and_the_holder_is_told_its_excess(
    world: World,
) -> None:
    await world.tenant("acme")
    await world.account("acme", "smtp1", 2525, max_connections=10)
    pk = await world.fetchval("SELECT pk FROM accounts WHERE id = 'smtp1'")
    now = time.time()
    async with world.pool.acquire() as conn:
        assert await acquire_slots(conn, **_ask(pk, "one", 50, now)) == 10
        assert await excess_slots(conn, owner="one", now=now) == {}  # nobody waits
        # The second sender gets nothing (the cap is used) and is marked wanting ...
        assert await acquire_slots(conn, **_ask(pk, "two", 50, now)) == 0
        # ... so the first learns it holds 5 above its share of 10 between two senders.
        assert await excess_slots(conn, owner="one", now=now) == {pk: 5}
        await release_slots(conn, account_pk=pk, owner="one", count=5)
        # Freed slots go to the waiting sender up to its share, not back to the first.
        assert await acquire_slots(conn, **_ask(pk, "one", 50, now)) == 0
        assert await acquire_slots(conn, **_ask(pk, "two", 50, now)) == 5
        assert await excess_slots(conn, owner="one", now=now) == {}
        # Wanting lapses when a sender stops asking: then the cap is whoever's asks.
        later = now + DEMAND_SECONDS + 1
        await release_slots(conn, account_pk=pk, owner="two", count=5)
        assert await acquire_slots(conn, **_ask(pk, "one", 50, later)) == 5


def _ask(pk: int, owner: str, wanted: int, now: float) -> dict[str, Any]:
    return {"account_pk": pk, "owner": owner, "wanted": wanted, "lease_seconds": 30, "now": now}


@pytest.mark.parametrize(("cap", "senders", "share"), [(10, 2, 5), (5, 3, 2), (1, 4, 1), (7, 1, 7)])
def test_fair_share_rounds_up_so_the_whole_cap_stays_usable(
    cap: int, senders: int, share: int
) -> None:
    assert fair_share(cap, senders) == share
