# SPDX-License-Identifier: Apache-2.0
"""Long-running services a process can host: the API (uvicorn), the sender (worker + reporter)
and the sender's probe/metrics endpoint."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import asyncpg
import uvicorn

from mail_proxy.config import Settings
from mail_proxy.metrics import Metrics
from mail_proxy_api.app import create_app
from mail_proxy_api.context import ApiContext
from mail_proxy_sender.probes import create_probe_app
from mail_proxy_sender.service import SenderContext, run_sender


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the process's stop event drives shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _probe_server(
    pool: asyncpg.Pool, metrics: Metrics, settings: Settings, port: int
) -> QuietServer:
    """/health, /ready and /metrics of this process on GMP_HOST:`port`."""
    token = settings.metrics_token
    config = uvicorn.Config(
        create_probe_app(
            pool,
            metrics,
            metrics_token=token.get_secret_value() if token else None,
            metrics_cache_seconds=settings.metrics_cache_seconds,
        ),
        host=settings.host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    return QuietServer(config)


async def serve_api(ctx: ApiContext, settings: Settings, stop: asyncio.Event) -> None:
    """The API until `stop`; with `GMP_API_METRICS_PORT`, its /metrics on that port instead."""
    metrics_server: QuietServer | None = None
    metrics_task: asyncio.Task[None] | None = None
    if settings.api_metrics_port is not None:
        metrics_server = _probe_server(ctx.pool, ctx.metrics, settings, settings.api_metrics_port)
        metrics_task = asyncio.create_task(metrics_server.serve())
    try:
        await _serve_api(ctx, settings, stop)
    finally:
        if metrics_server is not None and metrics_task is not None:
            metrics_server.should_exit = True
            await metrics_task
    if metrics_server is not None and not stop.is_set() and not metrics_server.started:
        raise SystemExit(f"cannot listen on {settings.host}:{settings.api_metrics_port}")


async def _serve_api(ctx: ApiContext, settings: Settings, stop: asyncio.Event) -> None:
    config = uvicorn.Config(
        create_app(ctx),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=10,
    )
    server = QuietServer(config)

    async def stop_when_asked() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stop_when_asked())
    try:
        await server.serve()
    finally:
        watcher.cancel()
    if not stop.is_set() and not server.started:
        raise SystemExit(f"cannot listen on {settings.host}:{settings.port}")


async def serve_sender(ctx: SenderContext, stop: asyncio.Event, *, probe_port: int | None) -> None:
    """The sender until `stop`; with `probe_port`, /health, /ready and /metrics on GMP_HOST."""
    if probe_port is None:
        await run_sender(ctx, stop)
        return
    server = _probe_server(ctx.pool, ctx.metrics, ctx.settings, probe_port)
    probes = asyncio.create_task(server.serve())
    try:
        await run_sender(ctx, stop)
    finally:
        server.should_exit = True
        await probes
