"""Long-running services a process can host: the API (uvicorn) and, later, sender and reporter."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn

from mail_proxy.config import Settings
from mail_proxy_api.app import create_app
from mail_proxy_api.context import ApiContext


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
