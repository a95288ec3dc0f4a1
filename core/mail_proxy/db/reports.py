# SPDX-License-Identifier: Apache-2.0
"""Delivery-report state: which tenants to call, their unreported events, acks and back-off.

A reporter first *claims* a tenant (`sync_owner`, `sync_lease_until`): one pod at a time talks
to a tenant, so its reports arrive in order and heartbeats are not multiplied by the number of
pods. It then leases the tenant's unreported events (`report_owner`, `report_lease_until`),
posts them, and acknowledges (`reported_ts`) or releases them. Every piece of state lives here,
shared by all pods: last sync, do-not-disturb, failures and the next retry time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

# Tenants with something to say (unreported events) or due for an idle heartbeat (own URL,
# active, interval elapsed, do-not-disturb over), not backing off, not claimed by another pod.
_CLAIM = """
WITH due AS (
    SELECT t.id FROM tenants t
    WHERE (t.sync_lease_until IS NULL OR t.sync_lease_until < now())
      AND coalesce(t.sync_retry_at, 0) <= $1::float8
      AND (EXISTS (SELECT 1 FROM message_events e
                   WHERE e.tenant_id = t.id AND e.reported_ts IS NULL
                     AND (e.report_lease_until IS NULL OR e.report_lease_until < now()))
           OR (t.active AND t.client_base_url IS NOT NULL
               AND coalesce(t.last_sync_ts, 0) <= $1::float8 - $2::float8
               AND coalesce(t.dnd_until, 0) <= $1::float8))
    ORDER BY coalesce(t.last_sync_ts, 0), t.id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE tenants t SET sync_owner = $4, sync_lease_until = now() + make_interval(secs => $5)
FROM due WHERE t.id = due.id
RETURNING t.id, t.name, t.active, t.client_base_url, t.client_sync_path, t.client_auth,
          t.last_sync_ts, t.dnd_until, t.sync_failures
"""
_EXTEND_CLAIM = """
UPDATE tenants SET sync_lease_until = now() + make_interval(secs => $3)
WHERE id = $1 AND sync_owner = $2
"""
_RELEASE_CLAIM = """
UPDATE tenants SET sync_owner = NULL, sync_lease_until = NULL WHERE id = $1 AND sync_owner = $2
"""
_LEASE_EVENTS = """
WITH picked AS (
    SELECT id FROM message_events
    WHERE tenant_id = $1 AND reported_ts IS NULL
      AND (report_lease_until IS NULL OR report_lease_until < now())
    ORDER BY id LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE message_events e
SET report_owner = $3, report_lease_until = now() + make_interval(secs => $4)
FROM picked WHERE e.id = picked.id
RETURNING e.id, e.message_id, e.event_type, e.event_ts, e.description, e.metadata
"""
_ACK_EVENTS = """
UPDATE message_events SET reported_ts = $3, report_owner = NULL, report_lease_until = NULL
WHERE id = ANY ($1::bigint[]) AND report_owner = $2
"""
_RELEASE_EVENTS = """
UPDATE message_events SET report_owner = NULL, report_lease_until = NULL
WHERE id = ANY ($1::bigint[]) AND report_owner = $2
"""
_DISCARD_EVENTS = """
UPDATE message_events SET reported_ts = $2, report_owner = NULL, report_lease_until = NULL
WHERE tenant_id = $1 AND reported_ts IS NULL
"""
_SUCCEEDED = """
UPDATE tenants SET last_sync_ts = $2, dnd_until = $3, sync_failures = 0, sync_retry_at = NULL,
                   last_sync_error = NULL
WHERE id = $1
"""
_FAILED = """
UPDATE tenants SET sync_failures = sync_failures + 1, sync_retry_at = $2, last_sync_error = $3
WHERE id = $1
RETURNING sync_failures
"""


@dataclass(frozen=True)
class ClaimedTenant:
    id: str
    name: str | None
    active: bool
    client_base_url: str | None
    client_sync_path: str | None
    client_auth: dict[str, Any] | None
    last_sync_ts: float | None
    dnd_until: int | None
    sync_failures: int


@dataclass(frozen=True)
class PendingEvent:
    id: int
    message_id: str
    event_type: str
    event_ts: int
    description: str | None
    metadata: dict[str, Any] | None


async def claim_tenants(
    conn: asyncpg.Connection,
    *,
    owner: str,
    now: float,
    heartbeat_seconds: float,
    claim_seconds: float,
    limit: int,
) -> list[ClaimedTenant]:
    """Claim up to `limit` tenants that are due a call; the least recently synced first."""
    rows = await conn.fetch(_CLAIM, now, heartbeat_seconds, limit, owner, claim_seconds)
    return [ClaimedTenant(**dict(r.items())) for r in rows]


async def extend_claim(
    conn: asyncpg.Connection, *, tenant_id: str, owner: str, claim_seconds: float
) -> None:
    await conn.execute(_EXTEND_CLAIM, tenant_id, owner, claim_seconds)


async def release_claim(conn: asyncpg.Connection, *, tenant_id: str, owner: str) -> None:
    await conn.execute(_RELEASE_CLAIM, tenant_id, owner)


async def lease_events(
    conn: asyncpg.Connection, *, tenant_id: str, owner: str, limit: int, lease_seconds: float
) -> list[PendingEvent]:
    """The tenant's oldest unreported events, leased to `owner`, in report order."""
    rows = await conn.fetch(_LEASE_EVENTS, tenant_id, limit, owner, lease_seconds)
    events = [PendingEvent(**dict(r.items())) for r in rows]
    events.sort(key=lambda e: (e.event_ts, e.id))
    return events


async def ack_events(
    conn: asyncpg.Connection, *, event_ids: list[int], owner: str, now: float
) -> None:
    await conn.execute(_ACK_EVENTS, event_ids, owner, int(now))


async def release_events(conn: asyncpg.Connection, *, event_ids: list[int], owner: str) -> None:
    await conn.execute(_RELEASE_EVENTS, event_ids, owner)


async def discard_events(conn: asyncpg.Connection, *, tenant_id: str, now: float) -> int:
    """Mark a tenant's events reported without a call (nowhere to send them), so they purge."""
    status: str = await conn.execute(_DISCARD_EVENTS, tenant_id, int(now))
    return int(status.split()[-1])


async def sync_succeeded(
    conn: asyncpg.Connection, *, tenant_id: str, now: float, dnd_until: int | None
) -> None:
    await conn.execute(_SUCCEEDED, tenant_id, now, dnd_until)


async def sync_failed(
    conn: asyncpg.Connection, *, tenant_id: str, retry_at: int, error: str
) -> int:
    """Count a failed call and set when to try again; returns the consecutive failures."""
    failures: int = await conn.fetchval(_FAILED, tenant_id, retry_at, error[:500])
    return failures
