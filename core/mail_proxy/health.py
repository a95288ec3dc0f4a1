# SPDX-License-Identifier: Apache-2.0
"""What the probes and the metrics scrape of every process read from the database.

The API and the sender's probe endpoint both answer `/ready` and `/metrics` from these, so a
pod of either kind reports readiness and queue depth the same way.
"""

from __future__ import annotations

import asyncio
import hmac
import time

import asyncpg

from mail_proxy.db import messages as db_messages
from mail_proxy.db import webhooks as db_webhooks
from mail_proxy.db.account_health import all_health
from mail_proxy.db.migrate import pending_versions
from mail_proxy.db.pool import DATABASE_ERRORS
from mail_proxy.errors import MigrationError
from mail_proxy.metrics import Metrics

# The reference's exposition header; newer prometheus-client defaults to version=1.0.0, whose
# body is the same for our metric names.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A readiness check that takes longer than this fails (kubelet's default probe timeout is 1 s;
# probes in the chart allow more).
READY_TIMEOUT_SECONDS = 3.0


async def not_ready_reason(pool: asyncpg.Pool) -> str | None:
    """None when the database answers and its schema is current; else why not.

    Bounded as a whole (`READY_TIMEOUT_SECONDS`): a pooled connection to a Postgres that
    hangs (stopped, not gone) would otherwise make the probe wait forever instead of failing.
    """
    try:
        missing = await _pending_within(pool, READY_TIMEOUT_SECONDS)
    except MigrationError as exc:
        return str(exc)
    except DATABASE_ERRORS as exc:
        return f"database unreachable: {type(exc).__name__}"
    if missing:
        return f"schema not current: migrations {missing} not applied"
    return None


async def _pending_within(pool: asyncpg.Pool, seconds: float) -> list[int]:
    conn = await asyncio.wait_for(pool.acquire(), seconds)
    try:
        return await asyncio.wait_for(pending_versions(conn), seconds)
    except TimeoutError:
        # Returning it would wait for a reset the hung server never answers: drop it.
        conn.terminate()
        raise
    finally:
        await pool.release(conn, timeout=seconds)


async def refresh_queue_gauges(
    pool: asyncpg.Pool, metrics: Metrics, *, max_age_seconds: float = 0.0
) -> None:
    """Queue gauges (messages, and webhook endpoints' failures and backlog) are read from
    Postgres, so every pod reports the same truth; at most once per `max_age_seconds`, however
    often and however many scrapers ask (a scrape storm is not a query storm, issue 9)."""
    async with metrics.queue_gauges_lock:
        if time.monotonic() - metrics.queue_gauges_at < max_age_seconds:
            return
        await _read_queue_gauges(pool, metrics)
        metrics.queue_gauges_at = time.monotonic()


async def _read_queue_gauges(pool: asyncpg.Pool, metrics: Metrics) -> None:
    async with pool.acquire() as conn:
        rows = await db_messages.unsent_by_tenant_priority(conn)
        endpoints = await db_webhooks.endpoint_states(conn)
        accounts = await all_health(conn)
    metrics.webhook_failing.clear()
    metrics.webhook_pending.clear()
    for endpoint in endpoints:
        labels = (endpoint["tenant_id"], endpoint["id"])
        metrics.webhook_failing.labels(*labels).set(endpoint["consecutive_failures"])
        metrics.webhook_pending.labels(*labels).set(endpoint["pending"])
    metrics.account_healthy.clear()
    for account in accounts:
        if account.health is not None:  # never tried: nothing known yet
            healthy = 1.0 if account.health == "ok" else 0.0
            metrics.account_healthy.labels(account.tenant_id, account.account_id).set(healthy)
    metrics.pending_by_tenant.clear()
    metrics.oldest_pending.clear()
    oldest: dict[str, float] = {}
    for row in rows:
        metrics.pending_by_tenant.labels(row["tenant_id"], str(row["priority"])).set(row["pending"])
        oldest[row["tenant_id"]] = max(oldest.get(row["tenant_id"], 0.0), row["oldest_seconds"])
    for tenant_id, seconds in oldest.items():
        metrics.oldest_pending.labels(tenant_id).set(seconds)
    metrics.pending.set(sum(row["pending"] for row in rows))


def metrics_allowed(authorization: str | None, token: str | None) -> bool:
    """True when `/metrics` may answer: no `GMP_METRICS_TOKEN`, or `Bearer <that token>`."""
    if token is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)
