# SPDX-License-Identifier: Apache-2.0
"""Rows owned by Kubernetes resources (`managed_by`), and the live figures their status shows.

The operator writes tenants, accounts and the instance row through their own modules; this one
adds what only it asks: which tenant a resource manages, removing or releasing everything a
resource manages, the instance's managed settings, and per account / tenant / instance figures
(pending, sent in the last hour, last error). The caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

SENT_WINDOW_SECONDS = 3600

_TENANT_MANAGED_BY = "SELECT id FROM tenants WHERE managed_by = $1"

# Accounts first: a managed account may live under a tenant managed by someone else.
_DELETE_ACCOUNTS = "DELETE FROM accounts WHERE managed_by = $1"
_DELETE_TENANTS = "DELETE FROM tenants WHERE managed_by = $1"
_DELETE_OTHER_ACCOUNTS = (
    "DELETE FROM accounts WHERE managed_by = $1 AND NOT (tenant_id = $2 AND id = $3)"
)
# A released row remembers who released it: only that resource may take it back unasked.
_RELEASE_ACCOUNTS = (
    "UPDATE accounts SET managed_by = NULL, released_by = managed_by, updated_at = now() "
    "WHERE managed_by = $1"
)
_RELEASE_TENANTS = (
    "UPDATE tenants SET managed_by = NULL, released_by = managed_by, updated_at = now() "
    "WHERE managed_by = $1"
)
_RELEASE_INSTANCE = (
    "UPDATE instance SET managed_by = NULL, updated_at = now() WHERE id = 1 AND managed_by = $1"
)

_CLAIM_INSTANCE = """
UPDATE instance SET config = $1, managed_by = $2, updated_at = now()
WHERE id = 1 AND (config IS DISTINCT FROM $1 OR managed_by IS DISTINCT FROM $2)
"""


@dataclass(frozen=True)
class Figures:
    """Live numbers for a status: unsent messages, sent in the last hour, the latest failure."""

    pending: int
    sent_last_hour: int
    last_error: str | None
    last_error_ts: int | None
    # accounts of a tenant, or tenants of the instance; None for an account
    children: int | None = None


async def tenant_id_managed_by(conn: asyncpg.Connection, *, managed_by: str) -> str | None:
    """The id of the tenant row a resource manages, if it has been written."""
    value: str | None = await conn.fetchval(_TENANT_MANAGED_BY, managed_by)
    return value


async def account_health(
    conn: asyncpg.Connection, *, tenant_id: str, account_id: str
) -> tuple[str | None, str | None]:
    """(health, health_reason) the senders recorded for an account ('ok' / 'unhealthy' / None)."""
    row = await conn.fetchrow(
        "SELECT health, health_reason FROM accounts WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        account_id,
    )
    return (None, None) if row is None else (row["health"], row["health_reason"])


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def delete_managed(conn: asyncpg.Connection, *, managed_by: str) -> int:
    """Delete the accounts and tenants a resource manages (messages go with them); rows gone."""
    accounts = _count(await conn.execute(_DELETE_ACCOUNTS, managed_by))
    tenants = _count(await conn.execute(_DELETE_TENANTS, managed_by))
    return accounts + tenants


async def delete_managed_except(
    conn: asyncpg.Connection, *, managed_by: str, tenant_id: str, account_id: str
) -> int:
    """Delete accounts a resource manages other than (tenant_id, account_id): left behind when
    the resource's tenant row changed. Returns rows deleted."""
    return _count(await conn.execute(_DELETE_OTHER_ACCOUNTS, managed_by, tenant_id, account_id))


_TENANT_DEPENDENTS = """
SELECT a.managed_by, a.released_by FROM accounts a JOIN tenants t ON t.id = a.tenant_id
WHERE t.managed_by = $1 AND a.managed_by IS DISTINCT FROM $1
  AND (a.managed_by IS NOT NULL OR a.released_by IS NOT NULL)
ORDER BY a.managed_by NULLS LAST
"""


async def tenant_dependents(conn: asyncpg.Connection, *, managed_by: str) -> tuple[list[str], int]:
    """For the tenant `managed_by` manages: the other resources still managing its accounts,
    and how many of its accounts another resource released (deletionPolicy Retain)."""
    holders: list[str] = []
    retained = 0
    for row in await conn.fetch(_TENANT_DEPENDENTS, managed_by):
        if row["managed_by"] is not None:
            holders.append(row["managed_by"])
        else:
            retained += 1
    return holders, retained


async def release_managed(conn: asyncpg.Connection, *, managed_by: str) -> int:
    """Keep the rows but hand them back to the REST API (managed_by cleared); rows released."""
    total = 0
    for sql in (_RELEASE_ACCOUNTS, _RELEASE_TENANTS, _RELEASE_INSTANCE):
        total += _count(await conn.execute(sql, managed_by))
    return total


async def claim_instance(
    conn: asyncpg.Connection, *, config: dict[str, Any], managed_by: str | None
) -> bool:
    """Set the instance's settings document and manager; True when something changed."""
    status: str = await conn.execute(_CLAIM_INSTANCE, config, managed_by)
    return status != "UPDATE 0"


_ACCOUNT_FIGURES = """
WITH acct AS (SELECT pk FROM accounts WHERE tenant_id = $1 AND id = $2)
SELECT
  (SELECT count(*) FROM messages m, acct
    WHERE m.account_pk = acct.pk AND m.state IN ('pending', 'deferred', 'sending')) AS pending,
  (SELECT count(*) FROM messages m, acct
    WHERE m.account_pk = acct.pk AND m.state = 'sent'
      AND m.smtp_ts >= extract(epoch FROM now())::bigint - $3) AS sent_last_hour,
  last.error AS last_error, last.error_ts AS last_error_ts,
  NULL::bigint AS children
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
  SELECT m.error, coalesce(m.error_ts, m.smtp_ts) AS error_ts FROM messages m, acct
  WHERE m.account_pk = acct.pk AND m.error IS NOT NULL AND m.state IN ('error', 'deferred')
  ORDER BY coalesce(m.error_ts, m.smtp_ts) DESC NULLS LAST, m.pk DESC LIMIT 1
) AS last ON true
"""

_TENANT_FIGURES = """
SELECT
  (SELECT count(*) FROM messages m
    WHERE m.tenant_id = $1 AND m.state IN ('pending', 'deferred', 'sending')) AS pending,
  (SELECT count(*) FROM messages m
    WHERE m.tenant_id = $1 AND m.state = 'sent'
      AND m.smtp_ts >= extract(epoch FROM now())::bigint - $2) AS sent_last_hour,
  last.error AS last_error, last.error_ts AS last_error_ts,
  (SELECT count(*) FROM accounts a WHERE a.tenant_id = $1) AS children
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
  SELECT m.error, coalesce(m.error_ts, m.smtp_ts) AS error_ts FROM messages m
  WHERE m.tenant_id = $1 AND m.error IS NOT NULL AND m.state IN ('error', 'deferred')
  ORDER BY coalesce(m.error_ts, m.smtp_ts) DESC NULLS LAST, m.pk DESC LIMIT 1
) AS last ON true
"""

_INSTANCE_FIGURES = """
SELECT
  (SELECT count(*) FROM messages WHERE state IN ('pending', 'deferred', 'sending')) AS pending,
  (SELECT count(*) FROM messages
    WHERE state = 'sent' AND smtp_ts >= extract(epoch FROM now())::bigint - $1)
    AS sent_last_hour,
  NULL::text AS last_error, NULL::bigint AS last_error_ts,
  (SELECT count(*) FROM tenants) AS children
"""


def _figures(row: asyncpg.Record) -> Figures:
    return Figures(
        pending=int(row["pending"]),
        sent_last_hour=int(row["sent_last_hour"]),
        last_error=row["last_error"],
        last_error_ts=row["last_error_ts"],
        children=None if row["children"] is None else int(row["children"]),
    )


async def account_figures(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    account_id: str,
    window_seconds: int = SENT_WINDOW_SECONDS,
) -> Figures:
    return _figures(await conn.fetchrow(_ACCOUNT_FIGURES, tenant_id, account_id, window_seconds))


async def tenant_figures(
    conn: asyncpg.Connection, *, tenant_id: str, window_seconds: int = SENT_WINDOW_SECONDS
) -> Figures:
    return _figures(await conn.fetchrow(_TENANT_FIGURES, tenant_id, window_seconds))


async def instance_figures(
    conn: asyncpg.Connection, *, window_seconds: int = SENT_WINDOW_SECONDS
) -> Figures:
    return _figures(await conn.fetchrow(_INSTANCE_FIGURES, window_seconds))
