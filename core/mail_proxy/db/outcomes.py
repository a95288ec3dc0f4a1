# SPDX-License-Identifier: Apache-2.0
"""Recording delivery outcomes: one statement for a small batch of messages.

Each outcome moves its message out of `sending` (to `sent`, `deferred` or `error`), clears the
lease, adds the matching event, and for `sent` appends to `send_log` (the rate history) and
clears the account's 421/451 back-off level.

Per-recipient outcomes (`Outcome.recipients`) are stored in the same transaction, for the
messages whose row changed.

Ownership: `deferred` and `error` are only recorded while this sender still holds the lease.
`sent` is recorded whenever the message is not final yet, even if the lease was lost and the
row taken back (the SMTP server accepted it: that is the truth, and recording it stops the
other sender from sending it again).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from mail_proxy.db import recipients as db_recipients
from mail_proxy.db import storable
from mail_proxy.db.recipients import RecipientRow
from mail_proxy.states import MessageState

FinalState = Literal[MessageState.SENT, MessageState.DEFERRED, MessageState.ERROR]


@dataclass(frozen=True)
class Outcome:
    message_pk: int
    state: FinalState
    event_ts: int
    sent_at: float | None = None  # precise acceptance time, for the rate windows
    deferred_ts: int | None = None
    error: str | None = None  # the text stored on `error` and in the event
    metadata: dict[str, Any] | None = None
    rendered: bytes | None = None  # kept for the retry of a `deferred` message (MIME once)
    # Per-recipient outcomes to store with it (message_recipients); empty when every
    # recipient accepted at once.
    recipients: tuple[RecipientRow, ...] = ()


_RECORD = """
WITH o AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
                         $6::text[], $7::float8[], $9::bytea[])
        AS o(pk, state, event_ts, deferred_ts, error, metadata, sent_at, rendered)
),
upd AS (
    UPDATE messages m SET
        state = o.state,
        deferred_ts = CASE WHEN o.state = 'deferred' THEN o.deferred_ts END,
        smtp_ts = CASE WHEN o.state <> 'deferred' THEN o.event_ts END,
        error = CASE WHEN o.state = 'error' THEN o.error END,
        error_ts = CASE WHEN o.state = 'error' THEN o.event_ts END,
        -- built once: kept while a retry will come, dropped once the message is final
        rendered = CASE WHEN o.state = 'deferred' THEN coalesce(o.rendered, m.rendered) END,
        lease_owner = NULL, lease_until = NULL, updated_at = now()
    FROM o
    WHERE m.pk = o.pk
      AND ((m.state = 'sending' AND m.lease_owner = $8)
           OR (o.state = 'sent' AND m.state IN ('pending', 'deferred', 'sending')))
    RETURNING m.pk, m.tenant_id, m.id, m.account_pk
),
ev AS (
    INSERT INTO message_events (message_pk, tenant_id, message_id, event_type, event_ts,
                                description, metadata)
    SELECT u.pk, u.tenant_id, u.id, o.state, o.event_ts, o.error, o.metadata::jsonb
    FROM upd u JOIN o ON o.pk = u.pk
),
logged AS (
    INSERT INTO send_log (account_pk, tenant_id, sent_at)
    SELECT u.account_pk, u.tenant_id, o.sent_at
    FROM upd u JOIN o ON o.pk = u.pk
    WHERE o.state = 'sent' AND u.account_pk IS NOT NULL
),
calm AS (
    UPDATE accounts a SET throttle_level = 0
    WHERE a.throttle_level > 0 AND a.pk IN (
        SELECT u.account_pk FROM upd u JOIN o ON o.pk = u.pk WHERE o.state = 'sent')
)
SELECT pk FROM upd
"""


async def record_outcomes(
    conn: asyncpg.Connection, *, outcomes: list[Outcome], owner: str
) -> set[int]:
    """Store a batch of outcomes atomically; returns the message pks whose row changed.

    One statement when no outcome carries per-recipient rows (the usual case: every recipient
    accepted at once), which is atomic on its own; else both statements in one transaction
    (a savepoint when the caller already opened one).
    """
    if not outcomes:
        return set()
    if any(o.recipients for o in outcomes):
        async with conn.transaction():
            return await _record(conn, outcomes, owner)
    return await _record(conn, outcomes, owner)


async def _record(conn: asyncpg.Connection, outcomes: list[Outcome], owner: str) -> set[int]:
    rows = await conn.fetch(
        _RECORD,
        [o.message_pk for o in outcomes],
        [o.state for o in outcomes],
        [o.event_ts for o in outcomes],
        [o.deferred_ts for o in outcomes],
        # Errors and metadata carry servers' words: stored as Postgres can (`storable`).
        [storable.optional_text(o.error) for o in outcomes],
        [
            json.dumps(storable.json_value(o.metadata)) if o.metadata is not None else None
            for o in outcomes
        ],
        [o.sent_at for o in outcomes],
        owner,
        [o.rendered for o in outcomes],
    )
    changed = {r["pk"] for r in rows}
    recipient_rows = [r for o in outcomes if o.message_pk in changed for r in o.recipients]
    if recipient_rows:
        await db_recipients.record(conn, rows=recipient_rows, now=max(o.event_ts for o in outcomes))
    return changed
