"""Retention (SPEC section 3): reported final messages, old rate history and command log go."""

from __future__ import annotations

import time

from mail_proxy.db.retention import purge
from tests.integration.sender.conftest import World, eventually, running_sender

DAY = 86_400


async def _setup(world: World) -> None:
    await world.tenant("acme")
    await world.account("acme", "smtp1", 2525)
    await world.enqueue(
        "acme",
        "smtp1",
        {"id": "old_reported"},
        {"id": "old_unreported"},
        {"id": "recent_reported"},
        {"id": "pending"},
        {"id": "old_error"},
    )
    old = int(time.time()) - 10 * DAY
    recent = int(time.time()) - 60
    for message_id, state, ts, reported in (
        ("old_reported", "sent", old, old + 5),
        ("old_unreported", "sent", old, None),
        ("recent_reported", "sent", recent, recent + 5),
        ("old_error", "error", old, old + 5),
    ):
        await world.execute(
            "UPDATE messages SET state = $2, smtp_ts = $3 WHERE id = $1", message_id, state, ts
        )
        await world.execute(
            "INSERT INTO message_events (message_pk, tenant_id, message_id, event_type, event_ts, "
            "reported_ts) SELECT pk, tenant_id, id, $2, $3, $4 FROM messages WHERE id = $1",
            message_id,
            state,
            ts,
            reported,
        )
    pk = await world.fetchval("SELECT pk FROM accounts")
    await world.execute(
        "INSERT INTO send_log (account_pk, tenant_id, sent_at) VALUES ($1, 'acme', $2), "
        "($1, 'acme', $3)",
        pk,
        time.time() - 2 * DAY,
        time.time() - 10,
    )
    await world.execute(
        "INSERT INTO provider_feedback_seen (tenant_id, provider, event_key, seen_at) VALUES "
        "('acme', 'mailgun', 'old', now() - interval '8 days'), ('acme', 'mailgun', 'new', now())"
    )
    await world.execute(
        "INSERT INTO command_log (command_ts, endpoint, payload) VALUES ($1, 'old', '{}'), "
        "($2, 'new', '{}')",
        old,
        int(time.time()),
    )


async def _ids(world: World) -> set[str]:
    return set(await world.states("acme"))


async def test_purge_keeps_what_is_unreported_recent_or_unsent(world: World) -> None:
    await _setup(world)
    async with world.pool.acquire() as conn:
        purged = await purge(
            conn,
            now=time.time(),
            report_retention_seconds=7 * DAY,
            command_log_retention_seconds=30 * 60,
        )
    assert purged is not None
    assert (purged.messages, purged.send_log, purged.command_log) == (2, 1, 1)
    # Applied provider notifications (their duplicate guard) go after the report retention.
    assert purged.provider_notifications == 1
    assert await world.fetchval("SELECT array_agg(event_key) FROM provider_feedback_seen") == [
        "new"
    ]
    assert await _ids(world) == {"old_unreported", "recent_reported", "pending"}
    assert await world.fetchval("SELECT count(*) FROM message_events") == 2
    assert await world.fetchval(
        "SELECT array_agg(endpoint) FROM command_log WHERE endpoint IN ('old', 'new')"
    ) == ["new"]


async def test_command_log_is_kept_without_its_own_retention(world: World) -> None:
    await _setup(world)
    async with world.pool.acquire() as conn:
        await purge(
            conn,
            now=time.time(),
            report_retention_seconds=7 * DAY,
            command_log_retention_seconds=None,
        )
    assert (
        await world.fetchval("SELECT count(*) FROM command_log WHERE endpoint IN ('old', 'new')")
        == 2
    )


async def test_the_sender_applies_retention(world: World) -> None:
    await _setup(world)
    async with running_sender(world, retention_interval_seconds=0.2):
        await eventually(lambda: _gone(world, "old_reported"))
    assert "old_unreported" in await _ids(world)


async def _gone(world: World, message_id: str) -> bool:
    return message_id not in await _ids(world)
