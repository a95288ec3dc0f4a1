# SPDX-License-Identifier: BUSL-1.1
"""A tenant's suppression list: addresses that later messages are never sent to.

Rows are keyed by (tenant, bare lowercased address). An address gets here from a hard bounce,
from repeated soft bounces (`mail_proxy.db.bounces.record_bounce`), from a provider webhook, or
by hand (`POST /suppressions`). Intake refuses a suppressed recipient with the reason
`recipient suppressed` (SPEC section 13).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

SUPPRESSED_REASON = "recipient suppressed"

# What put an address on the list.
SOURCE_HARD_BOUNCE = "hard_bounce"
SOURCE_SOFT_BOUNCES = "soft_bounces"
SOURCE_MANUAL = "manual"


@dataclass(frozen=True)
class Suppression:
    tenant_id: str
    address: str
    reason: str
    source: str
    message_id: str | None  # client id of the message whose bounce put it here
    bounce_code: str | None
    created_at: datetime


def normalise(address: str) -> str:
    """The key an address is stored under: stripped and lowercased."""
    return address.strip().lower()


_ADD = """
INSERT INTO suppressions (tenant_id, address, reason, source, message_id, bounce_code)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (tenant_id, address) DO NOTHING
RETURNING tenant_id
"""
_LIST = """
SELECT * FROM suppressions
WHERE tenant_id = $1 AND ($2::text IS NULL OR address > $2)
  AND ($3::text IS NULL OR strpos(address, $3) > 0)
ORDER BY address
LIMIT $4
"""
_AMONG = """
SELECT s.tenant_id, s.address
FROM unnest($1::text[], $2::text[]) AS q(tenant_id, address)
JOIN suppressions s ON s.tenant_id = q.tenant_id AND s.address = q.address
"""


def _row(row: asyncpg.Record) -> Suppression:
    return Suppression(
        tenant_id=row["tenant_id"],
        address=row["address"],
        reason=row["reason"],
        source=row["source"],
        message_id=row["message_id"],
        bounce_code=row["bounce_code"],
        created_at=row["created_at"],
    )


async def add_suppression(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    address: str,
    reason: str,
    source: str,
    message_id: str | None = None,
    bounce_code: str | None = None,
) -> bool:
    """Put an address on the tenant's list; True when it was not there yet (an existing entry
    keeps its first reason and source)."""
    added = await conn.fetchval(
        _ADD, tenant_id, normalise(address), reason, source, message_id, bounce_code
    )
    return added is not None


async def remove_suppression(conn: asyncpg.Connection, *, tenant_id: str, address: str) -> bool:
    """Take an address off the list; False when it was not on it."""
    status: str = await conn.execute(
        "DELETE FROM suppressions WHERE tenant_id = $1 AND address = $2",
        tenant_id,
        normalise(address),
    )
    return status != "DELETE 0"


async def get_suppression(
    conn: asyncpg.Connection, *, tenant_id: str, address: str
) -> Suppression | None:
    row = await conn.fetchrow(
        "SELECT * FROM suppressions WHERE tenant_id = $1 AND address = $2",
        tenant_id,
        normalise(address),
    )
    return None if row is None else _row(row)


async def list_suppressions(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    after: str | None,
    limit: int,
    contains: str | None = None,
) -> list[Suppression]:
    """One page in address order; `after` is the last address of the previous page."""
    rows = await conn.fetch(_LIST, tenant_id, after, contains and normalise(contains), limit)
    return [_row(row) for row in rows]


async def suppressed_among(
    conn: asyncpg.Connection, *, pairs: Iterable[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which (tenant, normalised address) pairs are suppressed, in one round trip."""
    tenants: list[str] = []
    addresses: list[str] = []
    for tenant_id, address in pairs:
        tenants.append(tenant_id)
        addresses.append(address)
    if not tenants:
        return set()
    rows = await conn.fetch(_AMONG, tenants, addresses)
    return {(row["tenant_id"], row["address"]) for row in rows}


async def count_suppressions(conn: asyncpg.Connection) -> dict[str, int]:
    """Entries per tenant (for the metrics gauge)."""
    rows = await conn.fetch("SELECT tenant_id, count(*) AS n FROM suppressions GROUP BY 1")
    return {row["tenant_id"]: row["n"] for row in rows}
