# SPDX-License-Identifier: Apache-2.0
"""Idempotency keys for `POST /commands/add-messages` (SPEC section 13).

A key is scoped to its caller (a tenant id, or `""` for the admin). Inside one transaction the
caller takes a transaction-level advisory lock on (scope, key) — a second request with the same
key while the first runs fails to take it (HTTP 409) — then looks for a stored answer younger
than the TTL: the same request hash replays it, another hash is refused (HTTP 422). Otherwise
the request runs in the same transaction and its answer is stored with it, so a request that
fails (5xx, crash) leaves no key behind.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 0x6d70))"
_FIND = """
SELECT request_hash, response_status, response_body::text AS body FROM idempotency_keys
WHERE scope = $1 AND key = $2 AND created_at > now() - make_interval(secs => $3)
"""
_STORE = """
INSERT INTO idempotency_keys (scope, key, request_hash, response_status, response_body)
VALUES ($1, $2, $3, $4, $5::text::jsonb)
ON CONFLICT (scope, key) DO UPDATE SET
    request_hash = EXCLUDED.request_hash, response_status = EXCLUDED.response_status,
    response_body = EXCLUDED.response_body, created_at = now()
"""
_PURGE = """
DELETE FROM idempotency_keys WHERE ctid IN (
    SELECT ctid FROM idempotency_keys WHERE created_at < to_timestamp($1) LIMIT $2)
"""


@dataclass(frozen=True)
class StoredAnswer:
    request_hash: str
    status: int
    body: str  # JSON text


def request_hash(body: Any) -> str:
    """SHA-256 of the request as parsed, keys sorted: formatting does not change it."""
    try:
        text = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits somewhere in a free-form field
        text = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(text).hexdigest()


async def try_lock(conn: asyncpg.Connection, *, scope: str, key: str) -> bool:
    """Take the key for this transaction; False when another request holds it now."""
    taken: bool = await conn.fetchval(_LOCK, scope, key)
    return taken


async def find_answer(
    conn: asyncpg.Connection, *, scope: str, key: str, ttl_seconds: float
) -> StoredAnswer | None:
    row = await conn.fetchrow(_FIND, scope, key, float(ttl_seconds))
    if row is None:
        return None
    return StoredAnswer(row["request_hash"], row["response_status"], row["body"])


async def store_answer(
    conn: asyncpg.Connection, *, scope: str, key: str, hash_: str, status: int, body: str
) -> None:
    """Keep an answer (JSON text) for replays; an expired entry under the key is replaced."""
    await conn.execute(_STORE, scope, key, hash_, status, body)


async def purge_keys(conn: asyncpg.Connection, *, before: float, batch: int) -> int:
    """Delete up to `batch` keys stored before `before` (epoch seconds)."""
    status: str = await conn.execute(_PURGE, before, batch)
    return int(status.split()[-1])
