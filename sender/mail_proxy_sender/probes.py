"""The sender's small HTTP endpoint: `/health` (alive), `/ready` (database and schema current),
`/metrics` (this process's Prometheus families)."""

from __future__ import annotations

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mail_proxy.db.migrate import pending_versions
from mail_proxy.errors import MigrationError
from mail_proxy.metrics import Metrics


def create_probe_app(pool: asyncpg.Pool, metrics: Metrics) -> Starlette:
    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> Response:
        try:
            async with pool.acquire(timeout=2) as conn:
                missing = await pending_versions(conn)
        except MigrationError as exc:
            return JSONResponse({"status": "not ready", "reason": str(exc)}, status_code=503)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            reason = f"database unreachable: {type(exc).__name__}"
            return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
        if missing:
            reason = f"schema not current: migrations {missing} not applied"
            return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics_route(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/ready", ready),
            Route("/metrics", metrics_route),
        ]
    )
