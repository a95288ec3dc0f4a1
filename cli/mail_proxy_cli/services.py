# SPDX-License-Identifier: Apache-2.0
"""Long-running services a process can host: the API (uvicorn), the sender (worker + reporter)
and the sender's probe/metrics endpoint."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn

from mail_proxy.config import Settings
from mail_proxy_api.app import create_app
from mail_proxy_api.context import ApiContext
from mail_proxy_sender.probes import create_probe_app
from mail_proxy_sender.service import SenderContext, run_sender


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the process's stop event drives shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_api(ctx: ApiContext, settings: Settings, stop: asyncio.Event) -> None:
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
    config = uvicorn.Config(
        create_probe_app(
            ctx.pool,
            ctx.metrics,
            metrics_token=(
                ctx.settings.metrics_token.get_secret_value()
                if ctx.settings.metrics_token
                else None
            ),
            metrics_cache_seconds=ctx.settings.metrics_cache_seconds,
        ),
        host=ctx.settings.host,
        port=probe_port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = QuietServer(config)
    probes = asyncio.create_task(server.serve())
    try:
        await run_sender(ctx, stop)
    finally:
        server.should_exit = True
        await probes
