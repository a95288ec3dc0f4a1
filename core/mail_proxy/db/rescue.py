# SPDX-License-Identifier: Apache-2.0
"""The lease rescuer's query: expired leases back to the queue, each counted as an attempt.

A lease runs out only when its sender died, stalled, or crashed on the message. Putting the row
back untouched (as a release does) would let a message that kills its sender be retried for
ever; so, as River's job rescuer does, the lapsed lease counts as a failed attempt (`attempts`
was raised when the lease was taken and is kept):

- with retries left (`attempts <= max_retries`), the message is ready again at once (a dead
  sender's work resumes within seconds, SPEC section 13), with a `deferred` event whose reason
  is `LEASE_EXPIRED` and `deferred_ts` now;
- otherwise it ends in `error` with "Max retries (N) exceeded: <LEASE_EXPIRED>" and its event,
  so it is reported to the client like any other failure.
"""

from __future__ import annotations

import asyncpg

LEASE_EXPIRED = "lease expired before the sender recorded an outcome"

# $1 now (epoch s), $2 limit, $3 max_retries, $4 error text
_RESCUE = f"""
WITH expired AS (
    SELECT pk FROM messages WHERE state = 'sending' AND lease_until < now()
    ORDER BY lease_until LIMIT $2 FOR UPDATE SKIP LOCKED
),
upd AS (
    UPDATE messages m SET
        state = CASE WHEN m.attempts > $3 THEN 'error'
                     WHEN m.deferred_ts > $1 THEN 'deferred' ELSE 'pending' END,
        error = CASE WHEN m.attempts > $3 THEN $4 ELSE m.error END,
        error_ts = CASE WHEN m.attempts > $3 THEN $1 ELSE m.error_ts END,
        smtp_ts = CASE WHEN m.attempts > $3 THEN $1 ELSE m.smtp_ts END,
        lease_owner = NULL, lease_until = NULL, updated_at = now()
    FROM expired WHERE m.pk = expired.pk
    RETURNING m.pk, m.tenant_id, m.id, m.state, m.deferred_ts, m.attempts
),
ev AS (
    INSERT INTO message_events (message_pk, tenant_id, message_id, event_type, event_ts,
                                description, metadata)
    SELECT pk, tenant_id, id, CASE WHEN state = 'error' THEN 'error' ELSE 'deferred' END, $1,
           CASE WHEN state = 'error' THEN $4 ELSE '{LEASE_EXPIRED}' END,
           CASE WHEN state = 'error' THEN jsonb_build_object('retry_count', attempts - 1)
                ELSE jsonb_build_object('deferred_ts', greatest(deferred_ts, $1),
                                        'retry_count', attempts, 'reason', '{LEASE_EXPIRED}')
           END
    FROM upd
)
SELECT state, count(*) AS n FROM upd GROUP BY state
"""


async def rescue_expired(
    conn: asyncpg.Connection,
    *,
    now: float,
    max_retries: int,
    limit: int = 1000,
) -> dict[str, int]:
    """Apply the module doc's rule to up to `limit` expired leases; counts per new state
    (`pending`, `deferred`, `error`)."""
    rows = await conn.fetch(
        _RESCUE,
        int(now),
        limit,
        max_retries,
        f"Max retries ({max_retries}) exceeded: {LEASE_EXPIRED}",
    )
    return {r["state"]: r["n"] for r in rows}
