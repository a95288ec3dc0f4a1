# SPDX-License-Identifier: Apache-2.0
"""`/health` (liveness), `/ready` (database and schema), `/status`, `/metrics`."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import generate_latest

from mail_proxy.db import messages as db_messages
from mail_proxy.health import (
    METRICS_CONTENT_TYPE,
    metrics_allowed,
    not_ready_reason,
    refresh_queue_gauges,
)
from mail_proxy_api.auth import Caller
from mail_proxy_api.context import Ctx
from mail_proxy_api.errors import RETRY_AFTER_SECONDS
from mail_proxy_api.strict_json import StrictJsonRoute

router = APIRouter(tags=["health"], route_class=StrictJsonRoute)


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers. No database access, by design."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(ctx: Ctx) -> Response:
    """Readiness: the database answers and its schema is the one this version expects."""
    reason = await not_ready_reason(ctx.pool)
    if reason is not None:
        return JSONResponse(
            {"status": "not ready", "reason": reason},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
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


@router.get("/metrics")
async def metrics(ctx: Ctx, request: Request) -> Response:
    """Prometheus text; with `GMP_METRICS_TOKEN` set, only for `Authorization: Bearer <it>`.
    With `GMP_API_METRICS_PORT` set, served there only: 404 here."""
    if ctx.settings.api_metrics_port is not None:
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    token = ctx.settings.metrics_token
    if not metrics_allowed(
        request.headers.get("authorization"), token.get_secret_value() if token else None
    ):
        return JSONResponse(
            {"detail": "metrics token required"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    await refresh_queue_gauges(
        ctx.pool, ctx.metrics, max_age_seconds=ctx.settings.metrics_cache_seconds
    )
    return Response(generate_latest(ctx.metrics.registry), media_type=METRICS_CONTENT_TYPE)
