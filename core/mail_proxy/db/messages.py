# SPDX-License-Identifier: Apache-2.0
"""Message rows from the API's side: enqueue, list, delete, clean up, count.

The sender's side (lease, record outcome) lives with the sender; both meet on the `state`
column: pending | deferred | sending | sent | error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

# The reference's reasons for the two rejections decided here, defined with the others.
from mail_proxy.intake import ACCOUNT_NOT_FOUND, ALREADY_SENT
from mail_proxy.states import MessageState

STATUSES: tuple[MessageState, ...] = tuple(MessageState)


@dataclass(frozen=True)
class EnqueueItem:
    """One message as it will be stored; `reason` set means: store as rejected."""

    id: str
    tenant_id: str
    account_id: str | None
    priority: int
    payload: dict[str, Any]
    batch_code: str | None
    deferred_ts: int | None
    reason: str | None


@dataclass(frozen=True)
class EnqueueOutcome:
    queued: int
    rejected: list[tuple[str, str]]  # (id, reason)


# One round trip for a whole batch: resolve accounts, upsert the messages (an unsent one is
# replaced, an attempted one is kept and reported "already sent"), store an `error` event for
# each newly stored rejected message, and append the command-log entry.
# The batch arrives as one JSON array (encoding a handful of Postgres arrays cost the API more
# CPU than everything else it did); the log entry arrives as JSON text too, which Postgres parses
# faster than it can rebuild the same document from the batch. Only the messages that were not
# simply queued come back.
_ENQUEUE = """
WITH input AS (
    SELECT * FROM ROWS FROM (
        jsonb_to_recordset($1::text::jsonb) AS (
            id text, tenant_id text, account_id text, priority smallint, payload jsonb,
            batch_code text, deferred_ts bigint, reason text)
    ) WITH ORDINALITY
        AS t(id, tenant_id, account_id, priority, payload, batch_code, deferred_ts, reason, ord)
),
resolved AS (
    SELECT i.*, a.pk AS account_pk, coalesce(a.is_pec_account, false) AS is_pec,
           (tn.id IS NOT NULL) AS tenant_known,
           coalesce(i.reason, CASE WHEN a.pk IS NULL THEN $2::text END) AS final_reason
    FROM input i
    LEFT JOIN tenants tn ON tn.id = i.tenant_id
    LEFT JOIN accounts a ON a.tenant_id = i.tenant_id AND a.id = i.account_id
),
stored AS (
    INSERT INTO messages AS m (id, tenant_id, account_id, account_pk, priority, payload,
                               batch_code, deferred_ts, state, is_pec, error, error_ts, smtp_ts)
    SELECT id, tenant_id, account_id, account_pk, priority, payload, batch_code,
           deferred_ts,
           CASE WHEN final_reason IS NOT NULL THEN 'error'
                WHEN deferred_ts > $3 THEN 'deferred' ELSE 'pending' END,
           is_pec,
           final_reason,
           CASE WHEN final_reason IS NOT NULL THEN $3 END,
           CASE WHEN final_reason IS NOT NULL THEN $3 END
    FROM resolved WHERE tenant_known
    ORDER BY ord  -- FIFO inside a batch: pks follow the order the messages were submitted
    ON CONFLICT (tenant_id, id) DO UPDATE SET
        account_id = EXCLUDED.account_id, account_pk = EXCLUDED.account_pk,
        priority = EXCLUDED.priority, payload = EXCLUDED.payload,
        batch_code = EXCLUDED.batch_code, deferred_ts = EXCLUDED.deferred_ts,
        state = EXCLUDED.state, is_pec = EXCLUDED.is_pec, attempts = 0, rendered = NULL,
        updated_at = now()
    WHERE m.state IN ('pending', 'deferred') AND EXCLUDED.state <> 'error'
    RETURNING m.pk, m.tenant_id, m.id, m.state, (m.xmax = 0) AS inserted
),
unsuppressed AS (
    -- A replaced message starts over: the recipients its earlier version left out (suppression
    -- list) are decided again by this version (db.recipients.record_suppressed, next).
    DELETE FROM message_recipients r USING stored s
    WHERE r.message_pk = s.pk AND NOT s.inserted AND r.status = 'refused'
      AND r.reason = 'recipient suppressed'
),
events AS (
    INSERT INTO message_events (message_pk, tenant_id, message_id, event_type, event_ts,
                                description)
    SELECT s.pk, s.tenant_id, s.id, 'error', $3, r.final_reason
    FROM stored s JOIN resolved r ON r.tenant_id = s.tenant_id AND r.id = s.id
    WHERE s.state = 'error' AND s.inserted
),
logged AS (
    INSERT INTO command_log (command_ts, endpoint, tenant_id, payload, response_status)
    SELECT $3, 'addMessages', $4, $5::text::jsonb, NULL WHERE $5::text IS NOT NULL
)
SELECT r.ord, r.final_reason
FROM resolved r LEFT JOIN stored s ON s.tenant_id = r.tenant_id AND s.id = r.id
WHERE r.final_reason IS NOT NULL OR s.pk IS NULL
ORDER BY r.ord
"""


def _batch_json(items: list[EnqueueItem]) -> str:
    try:
        return orjson.dumps(items).decode()  # dataclasses natively, in one pass
    except TypeError:  # an integer beyond 64 bits in a free-form field: rare, slower path
        return json.dumps([vars(item) for item in items])


async def enqueue(
    conn: asyncpg.Connection,
    *,
    items: list[EnqueueItem],
    now_ts: int,
    log_tenant_id: str | None,
    log_payload: str | None,
) -> EnqueueOutcome:
    """Store a batch in one statement. Ids must be unique within `items`.

    `log_payload` (JSON text, secrets already masked) becomes the command-log entry; None
    writes no entry.
    """
    batch = _batch_json(items)
    rows = await conn.fetch(_ENQUEUE, batch, ACCOUNT_NOT_FOUND, now_ts, log_tenant_id, log_payload)
    rejected: list[tuple[str, str]] = [
        (items[row["ord"] - 1].id, row["final_reason"] or ALREADY_SENT) for row in rows
    ]
    return EnqueueOutcome(queued=len(items) - len(rejected), rejected=rejected)


_LIST = """
SELECT m.pk, m.id, m.tenant_id, t.name AS tenant_name, m.account_id, m.priority, m.batch_code,
       m.deferred_ts, m.smtp_ts, m.error, m.error_ts, m.created_at, m.updated_at,
       m.payload, m.is_pec, m.state, m.attempts
FROM messages m JOIN tenants t ON t.id = m.tenant_id
WHERE m.tenant_id = $1
  AND ($2::boolean IS FALSE OR m.state IN ('pending', 'deferred', 'sending'))
  AND ($3::text[] IS NULL OR m.state = ANY($3::text[]))
  AND ($4::smallint IS NULL OR (m.priority, m.pk) > ($4::smallint, $5::bigint))
ORDER BY m.priority, m.pk
LIMIT $6
"""
_HISTORY = """
SELECT message_pk, id AS event_id, event_type, event_ts, description, metadata, reported_ts
FROM message_events WHERE message_pk = ANY($1::bigint[]) ORDER BY message_pk, id
"""


async def list_messages(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    active_only: bool,
    states: list[str] | None,
    after: tuple[int, int] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """A page of a tenant's messages in (priority, arrival) order, after the cursor `after`."""
    rows: list[asyncpg.Record] = await conn.fetch(
        _LIST,
        tenant_id,
        active_only,
        states,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return rows


async def message_histories(
    conn: asyncpg.Connection, *, message_pks: list[int]
) -> dict[int, list[dict[str, Any]]]:
    history: dict[int, list[dict[str, Any]]] = {pk: [] for pk in message_pks}
    for row in await conn.fetch(_HISTORY, message_pks):
        event = dict(row.items())
        history[event.pop("message_pk")].append(event)
    return history


async def delete_messages(
    conn: asyncpg.Connection, *, tenant_id: str, ids: list[str]
) -> tuple[int, list[str]]:
    """Delete a tenant's messages by id; returns (removed, ids not found)."""
    removed: list[str] = [
        row["id"]
        for row in await conn.fetch(
            "DELETE FROM messages WHERE tenant_id = $1 AND id = ANY($2::text[]) RETURNING id",
            tenant_id,
            ids,
        )
    ]
    gone = set(removed)
    return len(removed), [i for i in dict.fromkeys(ids) if i not in gone]


_CLEANUP = """
DELETE FROM messages m
WHERE m.tenant_id = $1 AND m.state IN ('sent', 'error')
  AND NOT EXISTS (SELECT 1 FROM message_events e
                  WHERE e.message_pk = m.pk AND e.reported_ts IS NULL)
  AND coalesce((SELECT max(e.reported_ts) FROM message_events e WHERE e.message_pk = m.pk),
               m.smtp_ts) < $2
"""


async def cleanup_messages(conn: asyncpg.Connection, *, tenant_id: str, before_ts: int) -> int:
    """Delete final messages whose events were all reported before `before_ts`."""
    status: str = await conn.execute(_CLEANUP, tenant_id, before_ts)
    return int(status.split()[-1])


async def count_unsent(
    conn: asyncpg.Connection, *, tenant_id: str | None = None, batch_code: str | None = None
) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM messages WHERE state IN ('pending', 'deferred', 'sending') "
        "AND ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR batch_code = $2)",
        tenant_id,
        batch_code,
    )
    return count


async def unsent_by_tenant_priority(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Unsent counts and oldest age per (tenant, priority): the queue gauges."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT tenant_id, priority, count(*) AS pending, "
        "extract(epoch FROM now() - min(created_at))::float8 AS oldest_seconds "
        "FROM messages WHERE state IN ('pending', 'deferred', 'sending') "
        "GROUP BY tenant_id, priority"
    )
    return rows
