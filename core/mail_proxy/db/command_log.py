# SPDX-License-Identifier: Apache-2.0
"""The command log: an append-only record of every state-changing API call, secrets masked."""

from __future__ import annotations

from typing import Any

import asyncpg

_APPEND = """
INSERT INTO command_log (command_ts, endpoint, tenant_id, payload, response_status)
VALUES ($1, $2, $3, $4, $5)
"""
_LIST = """
SELECT id, command_ts, endpoint, tenant_id, payload, response_status FROM command_log
WHERE ($1::text IS NULL OR tenant_id = $1)
  AND ($2::bigint IS NULL OR command_ts >= $2) AND ($3::bigint IS NULL OR command_ts <= $3)
  AND ($4::text IS NULL OR strpos(endpoint, $4) > 0)
ORDER BY command_ts, id
LIMIT $5
"""
_EXPORT = """
SELECT endpoint, tenant_id, payload, command_ts FROM command_log
WHERE ($1::text IS NULL OR tenant_id = $1)
  AND ($2::bigint IS NULL OR command_ts >= $2) AND ($3::bigint IS NULL OR command_ts <= $3)
ORDER BY command_ts, id
LIMIT 100000
"""


async def append(
    conn: asyncpg.Connection,
    *,
    command_ts: int,
    endpoint: str,
    tenant_id: str | None,
    payload: Any,
    response_status: int,
) -> None:
    await conn.execute(_APPEND, command_ts, endpoint, tenant_id, payload, response_status)


async def list_commands(
    conn: asyncpg.Connection,
    *,
    tenant_id: str | None,
    since_ts: int | None,
    until_ts: int | None,
    endpoint_filter: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        _LIST, tenant_id, since_ts, until_ts, endpoint_filter, limit
    )
    return rows


async def export_commands(
    conn: asyncpg.Connection, *, tenant_id: str | None, since_ts: int | None, until_ts: int | None
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(_EXPORT, tenant_id, since_ts, until_ts)
    return rows
