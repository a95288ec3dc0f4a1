# SPDX-License-Identifier: Apache-2.0
"""Account health (issue 10 item 5; SPEC section 13): failures that belong to the account.

When a sender cannot open a session with an account's server (certificate not trusted,
authentication refused, connection refused, host not found, STARTTLS missing), the account is
marked `health = 'unhealthy'` with an actionable `health_reason`, and its queue is held: no
message of it is leased before `health_retry_at`. That time is the next probe: the first
message leased then tries again; the hold doubles with each consecutive failure
(`health_failures`), from `base_seconds` up to `max_seconds`. The first session that opens
marks the account `ok` again and sending resumes by itself.

Columns (accounts): `health` ('ok' | 'unhealthy' | NULL = never tried), `health_reason`,
`health_checked_at` (timestamptz), `health_retry_at` (epoch s), `health_failures`.
While held, each message given back gets one `deferred` event naming the health reason
(`metadata.account_held`, `deferred_ts` = the next probe), once per message per hold: a probe
that fails again writes nothing new for a message whose latest event already says so.

Readers: `GET /accounts`, the `gmp_account_healthy` gauge, the operator's SmtpAccount status
(Ready=False with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from mail_proxy.db import storable

_HOLD = """
UPDATE accounts
SET health = 'unhealthy', health_reason = $3, health_checked_at = now(),
    health_failures = health_failures + 1,
    health_retry_at = $2 + least($5::float8, $4::float8 * power(2, least(health_failures, 30)))
WHERE pk = $1
RETURNING health_retry_at
"""
_OK = """
UPDATE accounts
SET health = 'ok', health_reason = NULL, health_checked_at = now(), health_failures = 0,
    health_retry_at = NULL
WHERE pk = $1 AND (health IS DISTINCT FROM 'ok' OR health_retry_at IS NOT NULL)
"""
_HELD_EVENTS = """
INSERT INTO message_events (message_pk, tenant_id, message_id, event_type, event_ts,
                            description, metadata)
SELECT m.pk, m.tenant_id, m.id, 'deferred', $3::bigint, $2::text,
       jsonb_build_object('deferred_ts', $4::bigint, 'account_held', true)
FROM messages m
WHERE m.pk = ANY($1::bigint[])
  AND NOT EXISTS (
      SELECT 1 FROM (
          SELECT e.event_type, e.metadata FROM message_events e
          WHERE e.message_pk = m.pk ORDER BY e.id DESC LIMIT 1
      ) last
      WHERE last.event_type = 'deferred' AND last.metadata ? 'account_held')
"""
_ALL = """
SELECT a.tenant_id, a.id, a.health, a.health_reason FROM accounts a ORDER BY a.tenant_id, a.id
"""


@dataclass(frozen=True)
class AccountHealth:
    tenant_id: str
    account_id: str
    health: str | None
    reason: str | None


async def hold_account(
    conn: asyncpg.Connection,
    *,
    account_pk: int,
    reason: str,
    now: float,
    base_seconds: float,
    max_seconds: float,
) -> float:
    """Mark the account unhealthy and hold its queue; returns the next probe time (epoch s)."""
    until: float = await conn.fetchval(
        _HOLD, account_pk, now, storable.text(reason[:1000]), base_seconds, max_seconds
    )
    return until


async def report_held(
    conn: asyncpg.Connection, *, message_pks: list[int], reason: str, until: float, now: float
) -> int:
    """A `deferred` event with the health `reason` for each message given back by a hold, unless
    its latest event already is one (once per message per hold); returns how many were written."""
    status: str = await conn.execute(
        _HELD_EVENTS, message_pks, storable.text(reason[:1000]), int(now), int(until)
    )
    return int(status.split()[-1])


async def mark_account_ok(conn: asyncpg.Connection, *, account_pk: int) -> bool:
    """A session opened: the account is healthy; True when that changed something."""
    status: str = await conn.execute(_OK, account_pk)
    return status != "UPDATE 0"


async def all_health(conn: asyncpg.Connection) -> list[AccountHealth]:
    """Every account's health, for the metrics scrape."""
    return [
        AccountHealth(r["tenant_id"], r["id"], r["health"], r["health_reason"])
        for r in await conn.fetch(_ALL)
    ]
