# SPDX-License-Identifier: Apache-2.0
"""The sender's small HTTP endpoint: `/health` (alive), `/ready` (database and schema current),
`/metrics` (this process's Prometheus families and the shared queue gauges)."""

from __future__ import annotations

import asyncpg
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mail_proxy.health import (
    METRICS_CONTENT_TYPE,
    metrics_allowed,
    not_ready_reason,
    refresh_queue_gauges,
)
from mail_proxy.metrics import Metrics


def create_probe_app(
    pool: asyncpg.Pool,
    metrics: Metrics,
    *,
    metrics_token: str | None = None,
    metrics_cache_seconds: float = 5.0,
) -> Starlette:
    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> Response:
        reason = await not_ready_reason(pool)
        if reason is not None:
            return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics_route(request: Request) -> Response:
        if not metrics_allowed(request.headers.get("authorization"), metrics_token):
            return JSONResponse({"detail": "metrics token required"}, status_code=401)
        # Queue depth too, so autoscaling on gmp_pending_messages can scrape sender pods.
        await refresh_queue_gauges(pool, metrics, max_age_seconds=metrics_cache_seconds)
        return Response(generate_latest(metrics.registry), media_type=METRICS_CONTENT_TYPE)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/ready", ready),
            Route("/metrics", metrics_route),
        ]
    )
