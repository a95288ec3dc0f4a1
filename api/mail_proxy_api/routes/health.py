"""`/health` (liveness), `/ready` (database and schema), `/status`, `/metrics`."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import generate_latest

from mail_proxy.db import messages as db_messages
from mail_proxy.db.migrate import pending_versions
from mail_proxy.errors import MigrationError
from mail_proxy.metrics import Metrics
from mail_proxy_api.auth import Caller
from mail_proxy_api.context import Ctx
from mail_proxy_api.strict_json import StrictJsonRoute

router = APIRouter(tags=["health"], route_class=StrictJsonRoute)

# The reference's exposition header; newer prometheus-client defaults to version=1.0.0, whose
# body is the same for our metric names.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers. No database access, by design."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(ctx: Ctx) -> Response:
    """Readiness: the database answers and its schema is the one this version expects."""
    try:
        async with ctx.pool.acquire(timeout=2) as conn:
            missing = await pending_versions(conn)
    except MigrationError as exc:
        return JSONResponse({"status": "not ready", "reason": str(exc)}, status_code=503)
    except (OSError, TimeoutError) as exc:
        reason = f"database unreachable: {type(exc).__name__}"
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
    if missing:
        reason = f"schema not current: migrations {missing} not applied"
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/status")
async def status(caller: Caller, ctx: Ctx) -> dict[str, Any]:
    async with ctx.pool.acquire() as conn:
        pending = await db_messages.count_unsent(conn, tenant_id=caller.tenant_id)
    return {
        "ok": True,
        "active": True,
        "scheduler_active": True,
        "pending_messages": pending,
        "uptime_seconds": int(time.monotonic() - ctx.started_at),
    }


async def refresh_queue_gauges(ctx: Ctx, metrics: Metrics) -> None:
    """Queue gauges are read from Postgres at scrape time, so every pod reports the same truth."""
    async with ctx.pool.acquire() as conn:
        rows = await db_messages.unsent_by_tenant_priority(conn)
    metrics.pending_by_tenant.clear()
    metrics.oldest_pending.clear()
    oldest: dict[str, float] = {}
    for row in rows:
        metrics.pending_by_tenant.labels(row["tenant_id"], str(row["priority"])).set(row["pending"])
        oldest[row["tenant_id"]] = max(oldest.get(row["tenant_id"], 0.0), row["oldest_seconds"])
    for tenant_id, seconds in oldest.items():
        metrics.oldest_pending.labels(tenant_id).set(seconds)
    metrics.pending.set(sum(row["pending"] for row in rows))


@router.get("/metrics")
async def metrics(ctx: Ctx) -> Response:
    await refresh_queue_gauges(ctx, ctx.metrics)
    return Response(generate_latest(ctx.metrics.registry), media_type=METRICS_CONTENT_TYPE)
