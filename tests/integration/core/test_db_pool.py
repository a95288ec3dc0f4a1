"""The pool borrows connections without a reset round trip, and a session advisory lock never
goes back to the pool with a connection."""

import asyncio
import contextlib

import asyncpg

from mail_proxy.db.pool import create_pool, session_lock

KEY = 0x6D702D74657374  # any key this test alone uses


async def _last_query(observer: asyncpg.Connection, pid: int) -> str:
    query: str = await observer.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
    return query


async def test_a_released_connection_runs_no_reset_query(dsn: str) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    observer = await asyncpg.connect(dsn)
    try:
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()
            await conn.fetchval("SELECT 'borrowed' AS marker")
        # asyncpg's default would have run `SELECT pg_advisory_unlock_all(); ...` on release.
        assert await _last_query(observer, pid) == "SELECT 'borrowed' AS marker"
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE left_open (x int)")
        # A transaction left open is still rolled back (asyncpg's own part of the reset).
        async with pool.acquire() as conn:
            assert not await conn.fetchval("SELECT to_regclass('pg_temp.left_open') IS NOT NULL")
    finally:
        await observer.close()
        await pool.close()


async def test_session_lock_is_released_at_the_end_of_the_block(dsn: str) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    other = await asyncpg.connect(dsn)
    try:
        async with pool.acquire() as conn, session_lock(conn, KEY) as taken:
            assert taken
            assert not await other.fetchval("SELECT pg_try_advisory_lock($1)", KEY)
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", KEY)
        async with pool.acquire() as conn, session_lock(conn, KEY) as taken:
            assert not taken  # held elsewhere: the block runs without it
        await other.execute("SELECT pg_advisory_unlock($1)", KEY)
    finally:
        await other.close()
        await pool.close()


async def test_a_holder_that_cannot_unlock_closes_its_connection_instead_of_keeping_the_lock(
    dsn: str,
) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    other = await asyncpg.connect(dsn)
    try:
        with contextlib.suppress(asyncpg.PostgresError):
            async with pool.acquire() as conn, session_lock(conn, KEY) as taken:
                assert taken
                # The block leaves an aborted transaction behind: the unlock fails on it (and
                # a rollback alone would not release a session lock).
                await conn.execute("BEGIN")
                with contextlib.suppress(asyncpg.DivisionByZeroError):
                    await conn.execute("SELECT 1 / 0")
        for _ in range(100):
            if await other.fetchval("SELECT pg_try_advisory_lock($1)", KEY):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the lock outlived its holder")
        await other.execute("SELECT pg_advisory_unlock($1)", KEY)
        async with pool.acquire() as conn:  # the pool opens a new connection and goes on
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await other.close()
        await pool.close()
