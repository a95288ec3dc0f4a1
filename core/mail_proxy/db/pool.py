# SPDX-License-Identifier: Apache-2.0
"""The asyncpg pool, with JSON codecs so jsonb columns read and write Python values, that does
not reset a connection it gets back; `session_lock`, the one way to hold session state (an
advisory lock) on a pooled connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

CONNECT_TIMEOUT = 10.0
# How long a failed or cancelled lock holder waits to unlock before it closes the connection.
UNLOCK_TIMEOUT = 5.0


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, schema="pg_catalog", encoder=json.dumps, decoder=json.loads
        )


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """The pool's reset on release, after asyncpg's own (an open transaction rolled back, the
    Python-side listeners forgotten; the server side is not told): nothing more to do.

    asyncpg's default also runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` on every release: one more round trip per borrowed connection, about a quarter
    of a busy sender's statements. Our pooled connections keep no session state to reset: no
    SET, set_config(..., false), LISTEN (the wake-up listener has a connection of its own),
    temporary table or held cursor, and a session advisory lock only through `session_lock`,
    which releases it or closes the connection. tests/unit/core/test_pool_session_state.py
    reads every statement and migration for these.
    """


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections decode json/jsonb to Python objects."""
    # A bounded connect timeout: while Postgres is away, callers fail fast (API 503, senders
    # pause) instead of hanging for asyncpg's default 60 s.
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_no_session_state,
        timeout=CONNECT_TIMEOUT,
    )
    return pool


@contextlib.asynccontextmanager
async def session_lock(conn: asyncpg.Connection, key: int) -> AsyncIterator[bool]:
    """`pg_try_advisory_lock(key)` held for the block (for work spread over several
    transactions, e.g. batched deletes); yields whether it was taken.

    The lock is released at the end; when that cannot be done (the connection broke, or a
    cancellation cut the unlock) the connection is closed instead, which releases it too. So
    is a connection whose attempt was cut before its answer came (cancelled, connection lost):
    Postgres may have granted the lock all the same. A pooled connection never goes back to
    the pool holding the lock (the pool does not reset sessions, see `_no_session_state`).

    Errors: the block's own (its cancellation included) when it fails, never the failed
    unlock's (the unlock then gets `UNLOCK_TIMEOUT` seconds); else the unlock's.

    Session locks stack: a nested block on the same connection takes the key again and
    releases its own level (PostgreSQL manual, "Advisory Locks").
    """
    try:
        taken = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
    except BaseException:
        _close(conn)
        raise
    if not taken:
        yield False
        return
    try:
        yield True
    except BaseException:
        # The block's error is the one to report; the unlock may fail too (the connection is
        # gone), and then closing it is what releases the lock. Bounded: after a cancellation
        # the unlock first waits for Postgres to answer it, forever when Postgres hangs (and a
        # shutdown cancels only once). A new cancellation still wins.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(UNLOCK_TIMEOUT):
                await _unlock(conn, key)
        raise
    await _unlock(conn, key)


async def _unlock(conn: asyncpg.Connection, key: int) -> None:
    try:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)
    except BaseException:
        _close(conn)
        raise


def _close(conn: asyncpg.Connection) -> None:
    """Close at once (releasing its session locks); a pooled connection that already broke has
    been detached from its proxy, which then refuses even this."""
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection with the same codecs as the pool (migrations, LISTEN)."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


Record = asyncpg.Record

# Everything a database call can raise when Postgres is away, restarting or the connection broke
# mid-call (asyncpg's InternalClientError comes from a connection reset while a query was on
# it). Loops that must outlive an outage catch these, wait and try again.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
# SQLSTATE classes that mean "not reachable now", not "this query is wrong": 08 connection
# exception, 53 insufficient resources (too many connections), 57P operator intervention
# (admin shutdown, crash shutdown, cannot connect now).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")


def database_unavailable(exc: BaseException) -> bool:
    """True when `exc` says Postgres cannot be used right now (retry later), whatever the query."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate or "").startswith(_UNAVAILABLE_SQLSTATES)
    return isinstance(exc, DATABASE_ERRORS)


def record_dict(record: Any) -> dict[str, Any]:
    return dict(record.items())
