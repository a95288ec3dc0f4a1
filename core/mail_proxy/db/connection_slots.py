# SPDX-License-Identifier: Apache-2.0
"""SMTP connection slots: at most `max_connections` connections per account, across every pod.

Each sender keeps one row per account it is connected to, with how many connections it holds
(`slots`) and a lease renewed by its heartbeat. Taking slots locks the account row (as leasing
does), counts the live rows of every other sender and grants what fits under the effective cap:
`max_connections`, or the lower `connection_cap` a 421 "too many connections" set for a while.
A sender that dies stops renewing; its slots stop counting when their lease runs out.
"""

from __future__ import annotations

import asyncpg

_LOCK = """
SELECT CASE WHEN coalesce(connection_cap_until, 0) > $2
            THEN least(max_connections, connection_cap) ELSE max_connections END AS cap
FROM accounts WHERE pk = $1
FOR NO KEY UPDATE
"""
_OTHERS = """
SELECT coalesce(sum(slots), 0)::int FROM smtp_connection_slots
WHERE account_pk = $1 AND owner <> $2 AND lease_until > now()
"""
_MINE = "SELECT slots FROM smtp_connection_slots WHERE account_pk = $1 AND owner = $2"
_SET = """
INSERT INTO smtp_connection_slots (account_pk, owner, slots, lease_until)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
ON CONFLICT (account_pk, owner) DO UPDATE
SET slots = EXCLUDED.slots, lease_until = EXCLUDED.lease_until
"""
_RELEASE = """
UPDATE smtp_connection_slots SET slots = greatest(slots - $3, 0)
WHERE account_pk = $1 AND owner = $2
"""
_RENEW = """
UPDATE smtp_connection_slots SET lease_until = now() + make_interval(secs => $2)
WHERE owner = $1 AND slots > 0
"""
_FORGET = (
    "DELETE FROM smtp_connection_slots WHERE owner = $1 OR lease_until < now() - interval '1 hour'"
)
# Never raises a cap that is still in force: refusals in a burst each take one more off.
_LOWER = """
UPDATE accounts
SET connection_cap = greatest(1, least(
        max_connections, $2::int,
        CASE WHEN coalesce(connection_cap_until, 0) > $4 THEN connection_cap - 1 END)),
    connection_cap_until = $3
WHERE pk = $1
RETURNING connection_cap
"""
_IN_USE = """
SELECT coalesce(sum(slots), 0)::int FROM smtp_connection_slots
WHERE account_pk = $1 AND lease_until > now()
"""


async def acquire_slots(
    conn: asyncpg.Connection,
    *,
    account_pk: int,
    owner: str,
    wanted: int,
    lease_seconds: float,
    now: float,
) -> int:
    """Take up to `wanted` more connection slots; returns how many were granted (maybe 0).

    Runs in its own transaction (the account row lock is held until it ends).
    """
    async with conn.transaction():
        cap = await conn.fetchval(_LOCK, account_pk, now)
        if cap is None:
            return 0
        others: int = await conn.fetchval(_OTHERS, account_pk, owner)
        mine: int = await conn.fetchval(_MINE, account_pk, owner) or 0
        granted = max(0, min(wanted, int(cap) - others - mine))
        if granted:
            await conn.execute(_SET, account_pk, owner, mine + granted, float(lease_seconds))
    return granted


async def release_slots(
    conn: asyncpg.Connection, *, account_pk: int, owner: str, count: int
) -> None:
    """Give back `count` slots (connections closed)."""
    await conn.execute(_RELEASE, account_pk, owner, count)


async def renew_slots(conn: asyncpg.Connection, *, owner: str, lease_seconds: float) -> None:
    """The heartbeat: every slot row of `owner` stays counted for `lease_seconds` more."""
    await conn.execute(_RENEW, owner, float(lease_seconds))


async def forget_owner(conn: asyncpg.Connection, *, owner: str) -> None:
    """A sender that stops drops its rows (and long-dead senders' rows go with them)."""
    await conn.execute(_FORGET, owner)


async def lower_cap(
    conn: asyncpg.Connection, *, account_pk: int, now: float, for_seconds: float
) -> int:
    """After a 421 "too many connections": cap the account one below what is open now (and
    below a cap already in force), for `for_seconds`. Returns the new cap."""
    in_use: int = await conn.fetchval(_IN_USE, account_pk)
    cap: int = await conn.fetchval(_LOWER, account_pk, in_use - 1, now + for_seconds, now)
    return cap
