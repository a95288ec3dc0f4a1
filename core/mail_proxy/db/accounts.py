# SPDX-License-Identifier: Apache-2.0
"""SMTP account rows, unique per (tenant, id)."""

from __future__ import annotations

from typing import Any

import asyncpg

WRITABLE = (
    "host",
    "port",
    "username",
    "password",
    "ttl",
    "limit_per_minute",
    "limit_per_hour",
    "limit_per_day",
    "limit_behavior",
    "use_tls",
    "tls_verify",
    "batch_size",
    "max_connections",
    "is_pec_account",
    "imap_host",
    "imap_port",
    "imap_user",
    "imap_password",
    "imap_folder",
    "imap_ssl",
    "imap_starttls",
    "imap_processed_action",
    "imap_processed_folder",
)

_COLUMNS = ", ".join(WRITABLE)
_PLACEHOLDERS = ", ".join(f"${i}" for i in range(4, len(WRITABLE) + 4))
_UPDATES = ", ".join(f"{name} = EXCLUDED.{name}" for name in WRITABLE)
_UPSERT = f"""
INSERT INTO accounts (tenant_id, id, managed_by, {_COLUMNS})
VALUES ($1, $2, $3, {_PLACEHOLDERS})
ON CONFLICT (tenant_id, id) DO UPDATE SET {_UPDATES}, managed_by = EXCLUDED.managed_by,
    health_retry_at = NULL,  -- an edited account is tried again at once (account_health)
    updated_at = now()
RETURNING pk, (xmax = 0) AS created
"""
_DEFAULTS: dict[str, Any] = {
    "ttl": 300,
    "limit_behavior": "defer",
    "tls_verify": True,
    "is_pec_account": False,
    "imap_port": 993,
    "imap_folder": "INBOX",
    "imap_ssl": True,
    "max_connections": 20,
    "imap_starttls": False,
    "imap_processed_action": "keep",
}


async def upsert_account(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    account_id: str,
    fields: dict[str, Any],
    managed_by: str | None = None,
) -> bool:
    """Create or replace an account; True when created. Secrets must arrive encrypted."""
    values = [
        fields[name] if fields.get(name) is not None else _DEFAULTS.get(name) for name in WRITABLE
    ]
    row = await conn.fetchrow(_UPSERT, tenant_id, account_id, managed_by, *values)
    return bool(row["created"])


async def get_account(
    conn: asyncpg.Connection, *, tenant_id: str, account_id: str
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM accounts WHERE tenant_id = $1 AND id = $2", tenant_id, account_id
    )
    return row


async def list_accounts(conn: asyncpg.Connection, *, tenant_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM accounts WHERE tenant_id = $1 ORDER BY id", tenant_id
    )
    return rows


async def delete_account(conn: asyncpg.Connection, *, tenant_id: str, account_id: str) -> bool:
    """Delete the account and, through the cascade, its messages (in this tenant only)."""
    status: str = await conn.execute(
        "DELETE FROM accounts WHERE tenant_id = $1 AND id = $2", tenant_id, account_id
    )
    return status != "DELETE 0"
