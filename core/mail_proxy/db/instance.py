# SPDX-License-Identifier: Apache-2.0
"""The singleton instance row: name, admin token hash, bounce mailbox settings."""

from __future__ import annotations

from typing import Any

import asyncpg

WRITABLE = (
    "name",
    "bounce_enabled",
    "bounce_imap_host",
    "bounce_imap_port",
    "bounce_imap_user",
    "bounce_imap_password",
    "bounce_imap_folder",
    "bounce_imap_ssl",
    "bounce_poll_interval",
    "bounce_return_path",
    "bounce_imap_starttls",
    "bounce_processed_action",
    "bounce_processed_folder",
)


async def get_instance(conn: asyncpg.Connection) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow("SELECT * FROM instance WHERE id = 1")
    return row


async def update_instance(conn: asyncpg.Connection, *, fields: dict[str, Any]) -> None:
    names = [name for name in WRITABLE if name in fields]
    if not names:
        return
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=1))
    sql = f"UPDATE instance SET {assignments}, updated_at = now() WHERE id = 1"  # names: WRITABLE
    await conn.execute(sql, *(fields[name] for name in names))


async def admin_token_hash(conn: asyncpg.Connection) -> str | None:
    value: str | None = await conn.fetchval("SELECT admin_token_hash FROM instance WHERE id = 1")
    return value


async def set_admin_token_hash(conn: asyncpg.Connection, *, token_hash: str | None) -> None:
    await conn.execute(
        "UPDATE instance SET admin_token_hash = $1, updated_at = now() WHERE id = 1", token_hash
    )


_WHO = """
SELECT 'admin' AS kind, NULL::text AS tenant_id FROM instance
 WHERE id = 1 AND admin_token_hash = $1
UNION ALL
SELECT 'tenant', id FROM tenants
 WHERE api_key_hash = $1 AND active
   AND (api_key_expires_at IS NULL OR api_key_expires_at > $2)
UNION ALL
SELECT 'tenant', id FROM tenants
 WHERE previous_api_key_hash = $1 AND active AND previous_api_key_expires_at > $2
LIMIT 1
"""


async def token_owner(
    conn: asyncpg.Connection, *, token_hash: str, now_ts: int
) -> tuple[str, str | None] | None:
    """('admin', None), ('tenant', id), or None for an unknown or expired token, or the key of
    a tenant the admin deactivated.

    A tenant's previous key (operator rotation) still counts until its grace period ends.
    """
    row = await conn.fetchrow(_WHO, token_hash, now_ts)
    return None if row is None else (row["kind"], row["tenant_id"])
