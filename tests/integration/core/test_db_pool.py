"""The pool borrows connections without a reset round trip, and a session advisory lock never
goes back to the pool with a connection."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from mail_proxy.db.pool import UNLOCK_TIMEOUT, create_pool, session_lock
from tests.pg_proxy import SocketProxy

KEY = 0x6D702D74657374  # any key this test alone uses


@contextlib.asynccontextmanager
async def _pool_and_observer(
    dsn: str, proxy: SocketProxy | None = None
) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Connection]]:
    """A one-connection pool (through `proxy` when given) and a connection of its own to watch
    it; both closed after, with the relay's held replies let go first."""
    pool = await create_pool(proxy.dsn(dsn) if proxy else dsn, min_size=1, max_size=1)
    observer = await asyncpg.connect(dsn)
    try:
        yield pool, observer
    finally:
        if proxy is not None:
            proxy.release_replies()
        await observer.close()
        await pool.close()


async def _last_query(observer: asyncpg.Connection, pid: int) -> str:
    query: str = await observer.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
    return query


async def test_a_released_connection_runs_no_reset_query(dsn: str) -> None:
    async with _pool_and_observer(dsn) as (pool, observer):
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


async def test_session_lock_is_released_at_the_end_of_the_block(dsn: str) -> None:
    async with _pool_and_observer(dsn) as (pool, other):
        async with pool.acquire() as conn, session_lock(conn, KEY) as taken:
            assert taken
            assert not await other.fetchval("SELECT pg_try_advisory_lock($1)", KEY)
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", KEY)
        async with pool.acquire() as conn, session_lock(conn, KEY) as taken:
            assert not taken  # held elsewhere: the block runs without it
        await other.execute("SELECT pg_advisory_unlock($1)", KEY)


async def test_a_holder_that_cannot_unlock_closes_its_connection_instead_of_keeping_the_lock(
    dsn: str,
) -> None:
    async with _pool_and_observer(dsn) as (pool, other):
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


_HOLDERS = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid
"""


async def _until(observer: asyncpg.Connection, query: str, *args: object) -> None:
    for _ in range(200):
        if await observer.fetchval(query, *args):
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never true: {query.strip()}")


# The holder's statement is running (the tests' jobs sleep in Postgres).
_SLEEPING = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'"


async def _held(observer: asyncpg.Connection) -> bool:
    return bool(await observer.fetchval(_HOLDERS, KEY))


async def _until_free(observer: asyncpg.Connection) -> None:
    await _until(observer, f"SELECT ({_HOLDERS}) = 0", KEY)


async def test_a_lock_granted_to_a_call_cancelled_before_its_answer_is_not_kept_by_the_pool(
    dsn: str, proxy: SocketProxy
) -> None:
    await proxy.start()
    async with _pool_and_observer(dsn, proxy) as (pool, observer):
        async with pool.acquire() as conn, session_lock(conn, KEY):
            pass  # its statements are prepared now: taking the lock is one round trip

        async def purge_like() -> None:
            async with pool.acquire() as conn, session_lock(conn, KEY):
                await asyncio.sleep(3600)

        proxy.hold_replies()
        task = asyncio.create_task(purge_like())
        # Postgres granted the lock; its answer waits in the relay when the task is cancelled
        # (a shutdown, a timeout around the job).
        await _until(observer, _HOLDERS, KEY)
        task.cancel()
        proxy.release_replies()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _until_free(observer)
        async with pool.acquire() as conn:  # the pool goes on with a new connection
            assert await conn.fetchval("SELECT 1") == 1


async def test_a_block_cancelled_mid_query_ends_cancelled_and_frees_the_lock(dsn: str) -> None:
    async with _pool_and_observer(dsn) as (pool, observer):

        async def slow_job() -> None:
            async with pool.acquire() as conn, session_lock(conn, KEY) as taken:
                assert taken
                await conn.execute("SELECT pg_sleep(60)")

        task = asyncio.create_task(slow_job())
        await _until(observer, _SLEEPING)
        task.cancel()
        # Cancelled, not turned into the failed unlock's InterfaceError (which every database
        # loop catches and logs as a database error, so the cancellation would be lost).
        with pytest.raises(asyncio.CancelledError):
            await task
        await _until_free(observer)


async def test_a_holder_killed_mid_block_reports_its_own_error_and_the_lock_is_gone(
    dsn: str,
) -> None:
    async with _pool_and_observer(dsn) as (pool, observer):

        async def slow_job() -> None:
            async with pool.acquire() as conn, session_lock(conn, KEY):
                await conn.execute("SELECT pg_sleep(60)")

        task = asyncio.create_task(slow_job())
        await _until(observer, _SLEEPING)
        # Postgres ends the session (a restart, an operator's pg_terminate_backend).
        await observer.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query = 'SELECT pg_sleep(60)'"
        )
        with pytest.raises(asyncpg.PostgresConnectionError):
            await task  # the statement's error, not "connection is closed" from the unlock
        assert not await _held(observer)
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1


async def test_a_cancellation_while_unlocking_closes_the_connection(
    dsn: str, proxy: SocketProxy
) -> None:
    await proxy.start()
    async with _pool_and_observer(dsn, proxy) as (pool, observer):
        async with pool.acquire() as conn, session_lock(conn, KEY):
            pass  # prepared

        pids = []

        async def job() -> None:
            async with pool.acquire() as conn, session_lock(conn, KEY):
                pids.append(conn.get_server_pid())
                proxy.hold_replies()  # the unlock runs; its answer never comes back

        task = asyncio.create_task(job())
        await _until_free(observer)
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        proxy.release_replies()
        assert not await _held(observer)
        async with pool.acquire() as conn:
            # Whether the unlock ran is unknown to the client: that connection was closed.
            assert conn.get_server_pid() != pids[0]


async def test_nested_blocks_on_one_connection_stack_and_each_releases_its_own(
    dsn: str,
) -> None:
    # Session advisory locks stack: taken twice by one session, they need two unlocks.
    async with _pool_and_observer(dsn) as (pool, observer):
        async with pool.acquire() as conn, session_lock(conn, KEY) as outer:
            assert outer
            async with session_lock(conn, KEY) as inner:
                assert inner
            assert await _held(observer)  # the outer block still holds it
            assert not await observer.fetchval("SELECT pg_try_advisory_lock($1)", KEY)
        assert not await _held(observer)
        assert await observer.fetchval("SELECT pg_try_advisory_lock($1)", KEY)


async def test_a_holder_cancelled_while_postgres_hangs_ends_and_drops_its_connection(
    dsn: str, proxy: SocketProxy
) -> None:
    # A shutdown cancels the job once; with Postgres frozen, the unlock that follows would wait
    # for an answer forever, and the sender's shutdown with it.
    await proxy.start()
    async with _pool_and_observer(dsn, proxy) as (pool, observer):
        task: asyncio.Task[None] | None = None
        try:

            async def slow_job() -> None:
                async with pool.acquire() as conn, session_lock(conn, KEY):
                    await conn.execute("SELECT pg_sleep(60)")

            task = asyncio.create_task(slow_job())
            await _until(observer, _SLEEPING)
            proxy.freeze()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), UNLOCK_TIMEOUT + 5)
            proxy.thaw()
            await _until_free(observer)  # its session ended with the relayed connection
        finally:
            proxy.thaw()  # before the pool closes: a frozen relay would hold that up too
            if task is not None:
                task.cancel()
