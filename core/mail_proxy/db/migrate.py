# SPDX-License-Identifier: Apache-2.0
"""Forward-only migrations: numbered `.sql` files shipped in `mail_proxy/db/migrations/`.

Each file runs once, in its own transaction, and its SHA-256 is recorded. An applied file that
was edited afterwards is refused (`MigrationError`), never silently re-run. Concurrent runners
(several pods starting at once) serialise on an advisory lock, taken by polling so a waiting
runner can give up after `lock_timeout_seconds`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from mail_proxy.errors import MigrationError

# Arbitrary constant shared by every runner: "mail-prx" in ASCII.
ADVISORY_LOCK_KEY = 0x6D61696C2D707278 & 0x7FFFFFFFFFFFFFFF
_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
_RECORD = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def shipped_migrations() -> list[Migration]:
    """The migration files inside the package, in version order."""
    found = []
    for entry in resources.files("mail_proxy.db").joinpath("migrations").iterdir():
        match = _FILENAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    return found


async def _take_lock(conn: asyncpg.Connection, timeout_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", ADVISORY_LOCK_KEY):
        if loop.time() > deadline:
            raise MigrationError("another migration runner holds the lock; gave up waiting")
        await asyncio.sleep(0.1)


def _check_applied(applied: list[asyncpg.Record], shipped: list[Migration]) -> None:
    by_version = {m.version: m for m in shipped}
    for row in applied:
        mine = by_version.get(row["version"])
        if mine is None:
            raise MigrationError(
                f"database has migration {row['version']:04d}_{row['name']} that this version "
                "does not ship; it was written by a newer mail-proxy"
            )
        if mine.checksum != row["checksum"]:
            raise MigrationError(
                f"migration {mine.version:04d}_{mine.name}.sql was changed after it was applied; "
                "add a new migration instead of editing an applied one"
            )


async def migrate(
    conn: asyncpg.Connection,
    migrations: list[Migration] | None = None,
    *,
    lock_timeout_seconds: float = 60.0,
) -> list[Migration]:
    """Apply every pending migration; returns those applied by this call."""
    migrations = shipped_migrations() if migrations is None else migrations
    await _take_lock(conn, lock_timeout_seconds)
    try:
        await conn.execute(_CREATE_TABLE)
        applied = await conn.fetch(_APPLIED)
        _check_applied(applied, migrations)
        done = {row["version"] for row in applied}
        newly = []
        for migration in migrations:
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(_RECORD, migration.version, migration.name, migration.checksum)
            newly.append(migration)
        return newly
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)


async def pending_versions(
    conn: asyncpg.Connection, migrations: list[Migration] | None = None
) -> list[int]:
    """Versions not applied yet (empty when the schema is current); raises on drift."""
    migrations = shipped_migrations() if migrations is None else migrations
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    applied = await conn.fetch(_APPLIED) if exists else []
    _check_applied(applied, migrations)
    done = {row["version"] for row in applied}
    return [m.version for m in migrations if m.version not in done]
