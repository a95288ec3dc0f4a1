# SPDX-License-Identifier: Apache-2.0
"""Bringing a process up: settings, the database (embedded or external), key, pool, migrations."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import click

from mail_proxy.config import Settings
from mail_proxy.db import migrate as db_migrate
from mail_proxy.db.pool import connect, create_pool
from mail_proxy.embedded import EmbeddedPostgres
from mail_proxy.encryption import SecretBox, load_box
from mail_proxy.instance_settings import LiveSettings, follow_instance_settings

KEY_FILE = "encryption_key"
_POOL_CLOSE_SECONDS = 10.0  # then the pool's connections are closed without Postgres' answer


@dataclass
class Database:
    dsn: str
    box: SecretBox


@contextlib.contextmanager
def database(settings: Settings, *, command: str) -> Iterator[Database]:
    """The DSN and key for this process; runs the embedded Postgres while the block is open.

    Embedded, the process owns the instance folder for the block (`command` names it to anyone
    who finds the folder in use); a server (`serve`) also records where it listens.
    """
    if settings.database_url is not None:
        yield Database(settings.database_url.get_secret_value(), load_box())
        return
    instance_dir = settings.instance_dir
    box = load_box(fallback_file=instance_dir / KEY_FILE)
    server = command == "serve"
    embedded = EmbeddedPostgres(
        instance_dir,
        command=command,
        host=settings.host if server else None,
        port=settings.port if server else None,
    )
    with embedded as dsn:
        yield Database(dsn, box)


async def migrate_database(dsn: str) -> list[str]:
    conn = await connect(dsn)
    try:
        applied = await db_migrate.migrate(conn)
    finally:
        await conn.close()
    return [f"{m.version:04d}_{m.name}" for m in applied]


@contextlib.asynccontextmanager
async def pool_for(settings: Settings, db: Database) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db.dsn, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    try:
        yield pool
    finally:
        try:
            # A graceful close waits for Postgres to answer; a frozen one never does.
            async with asyncio.timeout(_POOL_CLOSE_SECONDS):
                await pool.close()
        except TimeoutError:
            pool.terminate()


@contextlib.asynccontextmanager
async def instance_settings_followed(
    settings: Settings, pool: asyncpg.Pool, box: SecretBox, stop: asyncio.Event
) -> AsyncIterator[None]:
    """Stored MailProxyInstance settings applied now and re-read while the block runs."""
    live = LiveSettings(settings)
    await live.refresh(pool, box)
    task = asyncio.create_task(follow_instance_settings(live, pool, box, stop))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def stop_event_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, so every service can drain before the process ends."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def say(text: str) -> None:
    click.echo(text)
