# SPDX-License-Identifier: Apache-2.0
"""Tenant rows: create-or-replace, partial update, API keys, suspension and sync state."""

from __future__ import annotations

from typing import Any

import asyncpg

# Columns a client may write; the rest (keys, sync state, managed_by) have their own functions.
WRITABLE = (
    "name",
    "client_auth",
    "client_base_url",
    "client_sync_path",
    "client_attachment_path",
    "rate_limits",
    "large_file_config",
    "active",
)

_GET = "SELECT * FROM tenants WHERE id = $1"
_LIST = "SELECT * FROM tenants WHERE ($1::boolean IS FALSE OR active) ORDER BY id"
_EXISTS = "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)"

# Create-or-replace (reference semantics): on an existing tenant every writable field is
# overwritten, absent ones become NULL, and the API key is kept.
_UPSERT = """
INSERT INTO tenants (id, name, client_auth, client_base_url, client_sync_path,
                     client_attachment_path, rate_limits, large_file_config, active,
                     api_key_hash, managed_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name, client_auth = EXCLUDED.client_auth,
    client_base_url = EXCLUDED.client_base_url, client_sync_path = EXCLUDED.client_sync_path,
    client_attachment_path = EXCLUDED.client_attachment_path,
    rate_limits = EXCLUDED.rate_limits, large_file_config = EXCLUDED.large_file_config,
    active = EXCLUDED.active, managed_by = EXCLUDED.managed_by, updated_at = now()
RETURNING (xmax = 0) AS created
"""


async def get_tenant(conn: asyncpg.Connection, *, tenant_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(_GET, tenant_id)
    return row


async def tenant_exists(conn: asyncpg.Connection, *, tenant_id: str) -> bool:
    return bool(await conn.fetchval(_EXISTS, tenant_id))


async def list_tenants(conn: asyncpg.Connection, *, active_only: bool) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(_LIST, active_only)
    return rows


async def upsert_tenant(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    fields: dict[str, Any],
    api_key_hash: str | None,
    managed_by: str | None = None,
) -> bool:
    """Create or replace; True when created. `api_key_hash` is only used on creation."""
    created: bool = await conn.fetchval(
        _UPSERT,
        tenant_id,
        *(fields.get(name) for name in WRITABLE[:-1]),
        fields.get("active", True) is not False,
        api_key_hash,
        managed_by,
    )
    return created


async def update_tenant(
    conn: asyncpg.Connection, *, tenant_id: str, fields: dict[str, Any]
) -> bool:
    """Set the given writable fields; True when the tenant exists."""
    names = [name for name in WRITABLE if name in fields]
    if not names:
        return await tenant_exists(conn, tenant_id=tenant_id)
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
    sql = f"UPDATE tenants SET {assignments}, updated_at = now() WHERE id = $1"  # names: WRITABLE
    status: str = await conn.execute(sql, tenant_id, *(fields[name] for name in names))
    return status != "UPDATE 0"


async def delete_tenant(conn: asyncpg.Connection, *, tenant_id: str) -> bool:
    """Delete the tenant with its accounts, messages and events (foreign-key cascade)."""
    status: str = await conn.execute("DELETE FROM tenants WHERE id = $1", tenant_id)
    return status != "DELETE 0"


async def set_api_key(
    conn: asyncpg.Connection, *, tenant_id: str, key_hash: str | None, expires_at: int | None
) -> bool:
    """Replace the key at once (REST semantics): no previous key stays valid."""
    status: str = await conn.execute(
        "UPDATE tenants SET api_key_hash = $2, api_key_expires_at = $3, "
        "previous_api_key_hash = NULL, previous_api_key_expires_at = NULL, updated_at = now() "
        "WHERE id = $1",
        tenant_id,
        key_hash,
        expires_at,
    )
    return status != "UPDATE 0"


async def replace_api_key_with_grace(
    conn: asyncpg.Connection, *, tenant_id: str, key_hash: str, previous_valid_until: int | None
) -> bool:
    """Set a new key; the current one stays valid until `previous_valid_until` (epoch seconds,
    None: not at all). Clients that have not reloaded the key keep working meanwhile."""
    status: str = await conn.execute(
        """
        UPDATE tenants SET
            previous_api_key_hash = CASE WHEN $3::bigint IS NULL OR api_key_hash = $2
                                         THEN NULL ELSE api_key_hash END,
            previous_api_key_expires_at = CASE WHEN $3::bigint IS NULL OR api_key_hash = $2
                                               THEN NULL ELSE $3::bigint END,
            api_key_hash = $2, api_key_expires_at = NULL, updated_at = now()
        WHERE id = $1
        """,
        tenant_id,
        key_hash,
        previous_valid_until,
    )
    return status != "UPDATE 0"


async def set_suspended_batches(
    conn: asyncpg.Connection, *, tenant_id: str, value: str | None
) -> None:
    await conn.execute(
        "UPDATE tenants SET suspended_batches = $2, updated_at = now() WHERE id = $1",
        tenant_id,
        value,
    )


async def request_sync_now(conn: asyncpg.Connection, *, tenant_id: str) -> None:
    """Forget the last sync and any do-not-disturb window: the next report pass calls it."""
    await conn.execute(
        "UPDATE tenants SET last_sync_ts = 0, dnd_until = NULL, sync_retry_at = NULL WHERE id = $1",
        tenant_id,
    )


def parse_suspended(value: str | None) -> list[str]:
    """`suspended_batches` as a list: [] (none), ["*"] (all) or sorted batch codes."""
    if not value:
        return []
    return sorted({part for part in value.split(",") if part})


def suspend(current: str | None, batch_code: str | None) -> str:
    if batch_code is None or current == "*":
        return "*"
    return ",".join(sorted({*parse_suspended(current), batch_code}))


def activate(current: str | None, batch_code: str | None) -> str | None:
    """New value after activation; raises ValueError for one batch out of a full suspension."""
    if batch_code is None:
        return None
    if current == "*":
        raise ValueError("cannot activate single batch from full suspension")
    remaining = [code for code in parse_suspended(current) if code != batch_code]
    return ",".join(remaining) or None
