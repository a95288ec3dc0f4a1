"""The migration runner: every file exactly once, even with several runners at once; an applied
file that was edited afterwards, or a schema from a newer version, is refused."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from mail_proxy.db.migrate import Migration, migrate, pending_versions, shipped_migrations
from mail_proxy.db.pool import connect
from mail_proxy.errors import MigrationError


async def test_five_concurrent_runners_apply_each_file_once(empty_dsn: str) -> None:
    conns = [await connect(empty_dsn) for _ in range(5)]
    try:
        results = await asyncio.gather(*(migrate(conn) for conn in conns))
    finally:
        for conn in conns:
            await conn.close()

    shipped = shipped_migrations()
    applied = [m.version for result in results for m in result]
    assert sorted(applied) == [m.version for m in shipped]  # each file by exactly one runner
    conn = await asyncpg.connect(empty_dsn)
    try:
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY 1")
        assert [tuple(r) for r in rows] == [(m.version, m.name, m.checksum) for m in shipped]
        assert await conn.fetchval("SELECT count(*) FROM instance") == 1  # 0001's seed ran once
        assert await pending_versions(conn) == []
    finally:
        await conn.close()


async def test_a_second_run_applies_nothing(dsn: str) -> None:
    conn = await connect(dsn)
    try:
        assert await migrate(conn) == []
    finally:
        await conn.close()


async def test_pending_versions_on_an_empty_database(empty_dsn: str) -> None:
    conn = await asyncpg.connect(empty_dsn)
    try:
        assert await pending_versions(conn) == [m.version for m in shipped_migrations()]
    finally:
        await conn.close()


async def test_an_edited_applied_file_is_refused(empty_dsn: str) -> None:
    original = [Migration(1, "first", "CREATE TABLE t (x int)")]
    edited = [Migration(1, "first", "CREATE TABLE t (x bigint)")]
    conn = await asyncpg.connect(empty_dsn)
    try:
        await migrate(conn, original)
        with pytest.raises(MigrationError, match="was changed after it was applied"):
            await migrate(conn, edited)
        with pytest.raises(MigrationError):
            await pending_versions(conn, edited)
        # The refusal released the lock: another runner can still work.
        assert await migrate(conn, original) == []
    finally:
        await conn.close()


async def test_a_schema_from_a_newer_version_is_refused(empty_dsn: str) -> None:
    newer = [Migration(1, "first", "SELECT 1"), Migration(2, "second", "SELECT 2")]
    conn = await asyncpg.connect(empty_dsn)
    try:
        await migrate(conn, newer)
        with pytest.raises(MigrationError, match="written by a newer mail-proxy"):
            await migrate(conn, newer[:1])
    finally:
        await conn.close()


async def test_a_failing_file_leaves_nothing_half_applied(empty_dsn: str) -> None:
    broken = [
        Migration(1, "first", "CREATE TABLE a (x int)"),
        Migration(2, "second", "CREATE TABLE b (x int); SELECT no_such_function()"),
    ]
    conn = await asyncpg.connect(empty_dsn)
    try:
        with pytest.raises(asyncpg.PostgresError):
            await migrate(conn, broken)
        versions = await conn.fetch("SELECT version FROM schema_migrations")
        assert [r["version"] for r in versions] == [1]
        assert await conn.fetchval("SELECT to_regclass('b')") is None
        fixed = [broken[0], Migration(2, "second", "CREATE TABLE b (x int)")]
        assert [m.version for m in await migrate(conn, fixed)] == [2]
    finally:
        await conn.close()


async def test_a_runner_gives_up_when_the_lock_is_held(empty_dsn: str) -> None:
    from mail_proxy.db.migrate import ADVISORY_LOCK_KEY

    holder = await asyncpg.connect(empty_dsn)
    waiter = await asyncpg.connect(empty_dsn)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
        with pytest.raises(MigrationError, match="holds the lock"):
            await migrate(waiter, [], lock_timeout_seconds=0.3)
    finally:
        await holder.close()
        await waiter.close()
