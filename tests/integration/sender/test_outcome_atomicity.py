"""An outcome batch is stored whole or not at all: the message rows, their events and send_log,
and the per-recipient rows (db/outcomes.py `record_outcomes`; the writer retries a batch that
failed, so a half-stored one would be stored twice or lose its recipients)."""

from __future__ import annotations

import time

import asyncpg
import pytest

from mail_proxy.db.outcomes import Outcome, record_outcomes
from mail_proxy.db.recipients import RecipientRow
from tests.integration.sender.conftest import World

OWNER = "sender-a"


async def _leased(world: World, *ids: str) -> list[int]:
    await world.tenant("acme")
    await world.account("acme", "smtp1", 2525)
    await world.enqueue("acme", "smtp1", *({"id": i} for i in ids))
    rows = await world.pool.fetch(
        "UPDATE messages SET state = 'sending', lease_owner = $1, attempts = 1, "
        "lease_until = now() + interval '1 hour' WHERE id = ANY($2::text[]) RETURNING pk, id",
        OWNER,
        list(ids),
    )
    by_id = {r["id"]: r["pk"] for r in rows}
    return [by_id[i] for i in ids]


async def _stored(world: World) -> tuple[list[str], int, int, int]:
    states = sorted((await world.states("acme")).values())
    events = await world.fetchval(
        "SELECT count(*) FROM message_events WHERE event_type <> 'queued'"
    )
    logged = await world.fetchval("SELECT count(*) FROM send_log")
    recipients = await world.fetchval("SELECT count(*) FROM message_recipients")
    return states, events, logged, recipients


async def test_a_failing_recipient_statement_leaves_the_whole_batch_unstored(world: World) -> None:
    sent, refused = await _leased(world, "sent", "partly")
    now = int(time.time())
    good = RecipientRow(refused, "a@example.com", "accepted", 250, "OK", attempts=1)
    batch = [
        Outcome(sent, "sent", now, sent_at=now),
        Outcome(
            refused,
            "sent",
            now,
            sent_at=now,
            # The second statement fails (a status the table refuses): nothing of the batch
            # may stay, else the writer's retry would find the rows already moved.
            recipients=(good, RecipientRow(refused, "b@example.com", "bogus", 550)),  # type: ignore[arg-type]
        ),
    ]
    async with world.pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await record_outcomes(conn, outcomes=batch, owner=OWNER)
    assert await _stored(world) == (["sending", "sending"], 0, 0, 0)

    fixed = [batch[0], Outcome(refused, "sent", now, sent_at=now, recipients=(good,))]
    async with world.pool.acquire() as conn:
        assert await record_outcomes(conn, outcomes=fixed, owner=OWNER) == {sent, refused}
    assert await _stored(world) == (["sent", "sent"], 2, 2, 1)
