# SPDX-License-Identifier: Apache-2.0
"""The asyncpg pool, with JSON codecs so jsonb columns read and write Python values."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

CONNECT_TIMEOUT = 10.0


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, schema="pg_catalog", encoder=json.dumps, decoder=json.loads
        )


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections decode json/jsonb to Python objects."""
    # A bounded connect timeout: while Postgres is away, callers fail fast (API 503, senders
    # pause) instead of hanging for asyncpg's default 60 s.
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, timeout=CONNECT_TIMEOUT
    )
    return pool


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
