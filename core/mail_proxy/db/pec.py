# SPDX-License-Identifier: BUSL-1.1
"""PEC events: receipts as `pec_*` events, and the two timeouts (reference section 11).

Receipt events: `pec_acceptance` (accettazione, presa in carico), `pec_delivery` (consegna),
`pec_error` (mancata consegna, non accettazione; the message stops being PEC: `is_pec` is
cleared). Description `PEC <receipt>` (the reported `pec_details`), metadata
`{"pec_timestamp", "recipient", "error_reason", "receipt"}`.

Timeouts, checked by whichever sender holds the PEC timeout lock:
- acceptance: a PEC message sent more than `acceptance_timeout_seconds` ago with no
  `pec_acceptance` gets `pec_timeout` and is treated as ordinary mail (`is_pec` cleared);
- delivery (beyond the reference): a PEC message accepted but with no `pec_delivery` (nor
  `pec_error`) more than `delivery_timeout_seconds` after sending gets `pec_delivery_timeout`,
  once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg

from mail_proxy.db.pool import session_lock

ACCEPTANCE_TIMEOUT_EVENT = "pec_timeout"
DELIVERY_TIMEOUT_EVENT = "pec_delivery_timeout"
# "mail-pec" in ASCII: one timeout checker at a time across every process.
_LOCK_KEY = 0x6D61696C2D706563


@dataclass(frozen=True)
class PecEvent:
    message_pk: int
    event: str  # pec_acceptance | pec_delivery | pec_error
    receipt: str
    event_ts: int
    pec_timestamp: int | None
    recipient: str | None
    error_reason: str | None


_RECORD = """
WITH ev AS (
    INSERT INTO message_events (message_pk, tenant_id, message_id, event_type, event_ts,
                                description, metadata)
    SELECT m.pk, m.tenant_id, m.id, $2, $3, $4, $5::text::jsonb FROM messages m WHERE m.pk = $1
    RETURNING message_pk
)
UPDATE messages SET is_pec = false, updated_at = now()
WHERE $2 = 'pec_error' AND pk IN (SELECT message_pk FROM ev)
"""


async def record_pec_event(conn: asyncpg.Connection, *, event: PecEvent) -> None:
    metadata = {
        "pec_timestamp": event.pec_timestamp,
        "recipient": event.recipient,
        "error_reason": event.error_reason,
        "receipt": event.receipt,
    }
    await conn.execute(
        _RECORD,
        event.message_pk,
        event.event,
        event.event_ts,
        f"PEC {event.receipt}",
        json.dumps(metadata),
    )


_ACCEPTANCE_TIMEOUTS = """
WITH late AS (
    SELECT m.pk FROM messages m
    WHERE m.is_pec AND m.state = 'sent' AND m.smtp_ts < $1
      AND NOT EXISTS (SELECT 1 FROM message_events e WHERE e.message_pk = m.pk
                      AND e.event_type IN ('pec_acceptance', 'pec_error'))
    LIMIT 1000
    FOR UPDATE OF m SKIP LOCKED
),
cleared AS (
    UPDATE messages m SET is_pec = false, updated_at = now() FROM late
    WHERE m.pk = late.pk
    RETURNING m.pk, m.tenant_id, m.id
)
INSERT INTO message_events (message_pk, tenant_id, message_id, event_type, event_ts, description)
SELECT pk, tenant_id, id, 'pec_timeout', $2,
       'PEC acceptance timeout - message treated as normal email'
FROM cleared
RETURNING tenant_id
"""
_DELIVERY_TIMEOUTS = """
INSERT INTO message_events (message_pk, tenant_id, message_id, event_type, event_ts, description)
SELECT m.pk, m.tenant_id, m.id, 'pec_delivery_timeout', $2,
       'PEC delivery receipt not received in time'
FROM messages m
WHERE m.is_pec AND m.state = 'sent' AND m.smtp_ts < $1
  AND EXISTS (SELECT 1 FROM message_events e WHERE e.message_pk = m.pk
              AND e.event_type = 'pec_acceptance')
  AND NOT EXISTS (SELECT 1 FROM message_events e WHERE e.message_pk = m.pk
                  AND e.event_type IN ('pec_delivery', 'pec_error', 'pec_delivery_timeout'))
LIMIT 1000
RETURNING tenant_id
"""


async def apply_pec_timeouts(
    conn: asyncpg.Connection,
    *,
    now_ts: int,
    acceptance_timeout_seconds: int,
    delivery_timeout_seconds: int,
) -> tuple[int, int] | None:
    """Emit due timeout events; (acceptance, delivery) counts, None when another process is
    checking right now."""
    async with session_lock(conn, _LOCK_KEY) as taken:
        if not taken:
            return None
        accepted = await conn.fetch(
            _ACCEPTANCE_TIMEOUTS, now_ts - acceptance_timeout_seconds, now_ts
        )
        delivered = await conn.fetch(_DELIVERY_TIMEOUTS, now_ts - delivery_timeout_seconds, now_ts)
        return len(accepted), len(delivered)
