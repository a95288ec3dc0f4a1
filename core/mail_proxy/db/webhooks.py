# SPDX-License-Identifier: Apache-2.0
"""Webhook endpoints and their deliveries (Standard Webhooks, SPEC section 13).

Endpoints belong to a tenant: a URL, the event types it wants (None: all; `pec_*` matches every
PEC event), a signing secret (ENC: format) and, after a rotation, the previous secret with the
moment it stops signing. A trigger on `message_events` (migration 0008) adds one delivery per
matching active endpoint for every stored event, whoever stored it; and (migration 0015) one
per change of a recipient's outcome (`message_recipients`) for endpoints subscribed by name to
`recipient_accepted` / `recipient_refused` / `recipient_deferred`, once per recipient status
(`event_id` None, `recipient` set).

Deliveries are leased like messages (`FOR UPDATE SKIP LOCKED`, owner + expiry), so one process
delivers each; a dead deliverer's lease expires and another takes it. After a failed attempt
the delivery waits for the next step of the retry schedule, then is given up (`failed`).
Failure state (consecutive failures, last error, last success) is kept per endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from mail_proxy.errors import Conflict

_COLUMNS = """
w.id, w.tenant_id, w.url, w.event_types, w.active, w.consecutive_failures,
w.last_success_at, w.last_failure_at, w.last_error, w.previous_secret_until,
w.created_at, w.updated_at,
(SELECT count(*) FROM webhook_deliveries d
 WHERE d.webhook_pk = w.pk AND d.state = 'pending') AS pending_deliveries,
(SELECT count(*) FROM webhook_deliveries d
 WHERE d.webhook_pk = w.pk AND d.state = 'failed') AS failed_deliveries
"""
_LIST = f"SELECT {_COLUMNS} FROM webhooks w WHERE w.tenant_id = $1 ORDER BY w.id"
_GET = f"SELECT {_COLUMNS} FROM webhooks w WHERE w.tenant_id = $1 AND w.id = $2"
_CREATE = """
INSERT INTO webhooks (id, tenant_id, url, event_types, active, secret)
VALUES ($1, $2, $3, $4, $5, $6)
"""
_UPDATE = """
UPDATE webhooks SET url = coalesce($3, url),
                    event_types = CASE WHEN $4 THEN $5::text[] ELSE event_types END,
                    active = coalesce($6, active),
                    consecutive_failures = CASE WHEN $6 THEN 0 ELSE consecutive_failures END,
                    updated_at = now()
WHERE tenant_id = $1 AND id = $2
"""
_DELETE = "DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2"
_ROTATE = """
UPDATE webhooks SET previous_secret = secret,
                    previous_secret_until = now() + make_interval(secs => $4),
                    secret = $3, updated_at = now()
WHERE tenant_id = $1 AND id = $2
"""
_RETRY_FAILED = """
UPDATE webhook_deliveries d SET state = 'pending', attempts = 0, next_attempt_at = now(),
                                finished_at = NULL
FROM webhooks w
WHERE w.pk = d.webhook_pk AND w.tenant_id = $1 AND w.id = $2 AND d.state = 'failed'
"""

_LEASE = """
WITH picked AS (
    SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.pk = d.webhook_pk
    WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND w.active
      AND (d.lease_until IS NULL OR d.lease_until < now())
    ORDER BY d.next_attempt_at, d.id
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
SET lease_owner = $2, lease_until = now() + make_interval(secs => $3)
FROM picked, webhooks w
WHERE d.id = picked.id AND w.pk = d.webhook_pk
RETURNING d.id, d.webhook_pk, w.id AS webhook_id, d.tenant_id, w.url, w.secret,
          CASE WHEN w.previous_secret_until > now() THEN w.previous_secret END
              AS previous_secret,
          d.event_id, d.message_id, d.event_type, d.event_ts, d.description, d.metadata,
          d.attempts, d.recipient
"""
_SUCCEEDED = """
WITH d AS (
    UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1,
        last_status = $3, last_error = NULL, finished_at = now(),
        lease_owner = NULL, lease_until = NULL
    WHERE id = $1 AND lease_owner = $2 AND state = 'pending'
    RETURNING webhook_pk
)
UPDATE webhooks w SET consecutive_failures = 0, last_success_at = now()
FROM d WHERE w.pk = d.webhook_pk
RETURNING w.consecutive_failures
"""
# $5: seconds until the next attempt, NULL when the schedule is exhausted (given up).
_FAILED = """
WITH d AS (
    UPDATE webhook_deliveries SET
        attempts = attempts + 1, last_status = $3, last_error = $4,
        state = CASE WHEN $5::float8 IS NULL THEN 'failed' ELSE 'pending' END,
        next_attempt_at = CASE WHEN $5::float8 IS NULL THEN next_attempt_at
                               ELSE now() + make_interval(secs => $5::float8) END,
        finished_at = CASE WHEN $5::float8 IS NULL THEN now() END,
        lease_owner = NULL, lease_until = NULL
    WHERE id = $1 AND lease_owner = $2 AND state = 'pending'
    RETURNING webhook_pk
)
UPDATE webhooks w SET consecutive_failures = consecutive_failures + 1,
                      last_failure_at = now(), last_error = $4
FROM d WHERE w.pk = d.webhook_pk
RETURNING w.consecutive_failures
"""
_RELEASE = """
UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL
WHERE id = ANY ($1::bigint[]) AND lease_owner = $2
"""
_NEXT_DUE = """
SELECT extract(epoch FROM min(next_attempt_at) - now())::float8
FROM webhook_deliveries WHERE state = 'pending'
"""
_ENDPOINT_STATE = """
SELECT w.tenant_id, w.id, w.consecutive_failures,
       (SELECT count(*) FROM webhook_deliveries d
        WHERE d.webhook_pk = w.pk AND d.state = 'pending') AS pending
FROM webhooks w
"""
_PURGE = """
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE state <> 'pending' AND finished_at < to_timestamp($1) LIMIT $2)
"""


@dataclass(frozen=True)
class LeasedDelivery:
    """One event to POST to one endpoint; secrets still sealed (ENC:)."""

    id: int
    webhook_pk: int
    webhook_id: str
    tenant_id: str
    url: str
    secret: str
    previous_secret: str | None
    event_id: int | None  # None for a per-recipient event (migration 0015)
    message_id: str
    event_type: str
    event_ts: int
    description: str | None
    metadata: dict[str, Any] | None
    attempts: int  # made before this one
    # Set for a per-recipient event (`recipient_<status>`, migration 0015): whose outcome
    # (the normalised address; the shown one is in `metadata`).
    recipient: str | None = None


async def list_webhooks(conn: asyncpg.Connection, *, tenant_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(_LIST, tenant_id)
    return rows


async def get_webhook(
    conn: asyncpg.Connection, *, tenant_id: str, webhook_id: str
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(_GET, tenant_id, webhook_id)
    return row


async def create_webhook(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    webhook_id: str,
    url: str,
    event_types: list[str] | None,
    active: bool,
    sealed_secret: str,
) -> None:
    """Add an endpoint; `Conflict` when the tenant already has one with this id."""
    try:
        await conn.execute(_CREATE, webhook_id, tenant_id, url, event_types, active, sealed_secret)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"webhook '{webhook_id}' already exists") from exc


async def update_webhook(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    webhook_id: str,
    url: str | None,
    set_event_types: bool,
    event_types: list[str] | None,
    active: bool | None,
) -> bool:
    """Change what is given (None keeps); re-activating clears the failure count. False: none."""
    status: str = await conn.execute(
        _UPDATE, tenant_id, webhook_id, url, set_event_types, event_types, active
    )
    return status.split()[-1] != "0"


async def delete_webhook(conn: asyncpg.Connection, *, tenant_id: str, webhook_id: str) -> bool:
    """Remove an endpoint and its deliveries; False when there was none."""
    status: str = await conn.execute(_DELETE, tenant_id, webhook_id)
    return status.split()[-1] != "0"


async def rotate_secret(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    webhook_id: str,
    sealed_secret: str,
    overlap_seconds: float,
) -> bool:
    """Sign with a new secret; the current one keeps signing beside it for `overlap_seconds`."""
    status: str = await conn.execute(
        _ROTATE, tenant_id, webhook_id, sealed_secret, float(overlap_seconds)
    )
    return status.split()[-1] != "0"


async def retry_failed(conn: asyncpg.Connection, *, tenant_id: str, webhook_id: str) -> int:
    """Give the endpoint's given-up deliveries a new schedule, from now; returns how many."""
    status: str = await conn.execute(_RETRY_FAILED, tenant_id, webhook_id)
    return int(status.split()[-1])


async def lease_deliveries(
    conn: asyncpg.Connection, *, owner: str, limit: int, lease_seconds: float
) -> list[LeasedDelivery]:
    """Due deliveries of active endpoints, oldest first, leased to `owner`."""
    rows = await conn.fetch(_LEASE, limit, owner, float(lease_seconds))
    leased = [LeasedDelivery(**dict(row.items())) for row in rows]
    leased.sort(key=lambda d: d.id)
    return leased


async def delivery_succeeded(
    conn: asyncpg.Connection, *, delivery_id: int, owner: str, status: int
) -> bool:
    """Record a 2xx; False when the lease was lost meanwhile (nothing changed)."""
    return await conn.fetchval(_SUCCEEDED, delivery_id, owner, status) is not None


async def delivery_failed(
    conn: asyncpg.Connection,
    *,
    delivery_id: int,
    owner: str,
    status: int | None,
    error: str,
    retry_in_seconds: float | None,
) -> int | None:
    """Record a failed attempt and when to try again (None: give up).

    Returns the endpoint's consecutive failures, or None when the lease was lost meanwhile.
    """
    failures: int | None = await conn.fetchval(
        _FAILED, delivery_id, owner, status, error[:500], retry_in_seconds
    )
    return failures


async def release_deliveries(
    conn: asyncpg.Connection, *, delivery_ids: list[int], owner: str
) -> None:
    """Give leased deliveries back untouched (shutdown)."""
    await conn.execute(_RELEASE, delivery_ids, owner)


async def seconds_to_next_due(conn: asyncpg.Connection) -> float | None:
    """Seconds until the earliest pending delivery is due (<= 0: now); None when none waits."""
    value: float | None = await conn.fetchval(_NEXT_DUE)
    return value


async def endpoint_states(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Per endpoint: tenant, id, consecutive failures, pending deliveries (the gauges)."""
    rows: list[asyncpg.Record] = await conn.fetch(_ENDPOINT_STATE)
    return rows


async def purge_deliveries(conn: asyncpg.Connection, *, before: float, batch: int) -> int:
    """Delete up to `batch` finished deliveries (delivered or given up) older than `before`."""
    status: str = await conn.execute(_PURGE, before, batch)
    return int(status.split()[-1])
