"""Shared fixtures: one embedded Postgres per test session, a migrated template database, and a
fresh clone of it for every test that asks for `dsn`.

Everything listens on 127.0.0.1 or a Unix socket, and every server started here is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import socket
import tempfile
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import uvicorn
from starlette.types import ASGIApp

from mail_proxy.db.migrate import migrate
from mail_proxy.db.pool import connect
from mail_proxy_cli.services import QuietServer
from tests.pg_proxy import proxy  # noqa: F401  (a fixture for every test directory)

TEMPLATE = "mp_template"
_counter = itertools.count()


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """`timeout` and CI cancel pytest with SIGTERM, which skips fixture teardown; servers started
    here are daemons (pg_ctl) or detached, so they would outlive pytest. As KeyboardInterrupt,
    pytest stops and still runs the teardown that stops them."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def stopped_on_sigterm(stop: Callable[[], None]) -> Iterator[None]:
    """On SIGTERM, run `stop` and then end as SIGTERM would. For daemons that must not outlive
    pytest even when an in-process server would swallow a KeyboardInterrupt."""

    def handler(signum: int, frame: object) -> None:
        stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """DSN of the session's embedded Postgres (the `postgres` database)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    root = Path(tempfile.mkdtemp(prefix="mp-pg-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")

    def stop() -> None:
        server.cleanup()  # stops the postmaster and deletes pgdata
        shutil.rmtree(root, ignore_errors=True)

    try:
        with stopped_on_sigterm(stop):
            dsn: str = server.get_uri()
            asyncio.run(_build_template(dsn))
            yield dsn
    finally:
        stop()


def dsn_for(server_dsn: str, database: str) -> str:
    # pgserver DSNs look like postgresql://postgres:@/postgres?host=/socket/dir
    before, _, after = server_dsn.partition("/postgres?")
    return f"{before}/{database}?{after}"


async def _build_template(server_dsn: str) -> None:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        await admin.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await admin.close()
    conn = await connect(dsn_for(server_dsn, TEMPLATE))
    try:
        await migrate(conn)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def migrated_database(pg_server: str, prefix: str = "mp_test") -> AsyncIterator[str]:
    """A migrated database of its own (a copy of the template), dropped afterwards."""
    name = f"{prefix}_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        yield dsn_for(pg_server, name)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def dsn(pg_server: str) -> AsyncIterator[str]:
    """A migrated database of this test's own, dropped afterwards."""
    async with migrated_database(pg_server) as url:
        yield url


@pytest.fixture
async def empty_dsn(pg_server: str) -> AsyncIterator[str]:
    """An empty database (no migrations), dropped afterwards."""
    name = f"mp_empty_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield dsn_for(pg_server, name)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[int]:
    """Serve an ASGI app on 127.0.0.1 (a free port, yielded) until the block ends."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"
    )
    server = QuietServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
