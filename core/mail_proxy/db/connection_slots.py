# SPDX-License-Identifier: Apache-2.0
"""SMTP connection slots: at most `max_connections` connections per account, across every pod.

Each sender keeps one row per account it is connected to, with how many connections it holds
(`slots`) and a lease renewed by its heartbeat. Taking slots locks the account row (as leasing
does), counts the live rows of every other sender and grants what fits under the effective cap:
`max_connections`, or the lower `connection_cap` a 421 "too many connections" set for a while.
A sender that dies stops renewing; its slots stop counting when their lease runs out.

Sharing: a sender granted fewer slots than it asked for marks its row as wanting (for
`DEMAND_SECONDS`, renewed while it keeps asking). While another sender wants, grants stop at a
fair share, ceil(cap / senders holding or wanting), and `excess_slots` tells each sender how far
above that share it is, so it closes that many connections (idle ones first). Without this, the
first sender to connect to an account kept every slot and did all of the account's work alone.
"""

from __future__ import annotations

import math

import asyncpg

DEMAND_SECONDS = 3.0

_LOCK = """
SELECT CASE WHEN coalesce(connection_cap_until, 0) > $2
            THEN least(max_connections, connection_cap) ELSE max_connections END AS cap
FROM accounts WHERE pk = $1
FOR NO KEY UPDATE
"""
# The other senders of the account: slots they hold, and how many hold or want some.
_OTHERS = """
SELECT coalesce(sum(slots), 0)::int AS slots,
       count(*) FILTER (WHERE slots > 0 OR wanting_until > $3)::int AS interested,
       coalesce(bool_or(wanting_until > $3), false) AS wanting
FROM smtp_connection_slots
WHERE account_pk = $1 AND owner <> $2 AND lease_until > now()
"""
_MINE = "SELECT slots FROM smtp_connection_slots WHERE account_pk = $1 AND owner = $2"
_SET = """
INSERT INTO smtp_connection_slots (account_pk, owner, slots, lease_until, wanting_until)
VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5)
ON CONFLICT (account_pk, owner) DO UPDATE
SET slots = EXCLUDED.slots, lease_until = EXCLUDED.lease_until,
    wanting_until = EXCLUDED.wanting_until
"""
# Accounts where `owner` holds slots and another sender wants some: the effective cap, how many
# senders hold or want slots, and how many `owner` holds.
_CONTENDED = """
SELECT s.account_pk,
       CASE WHEN coalesce(a.connection_cap_until, 0) > $2
            THEN least(a.max_connections, a.connection_cap) ELSE a.max_connections END AS cap,
       count(*) FILTER (WHERE s.slots > 0 OR s.wanting_until > $2)::int AS interested,
       coalesce(max(s.slots) FILTER (WHERE s.owner = $1), 0)::int AS mine
FROM smtp_connection_slots s JOIN accounts a ON a.pk = s.account_pk
WHERE s.lease_until > now()
  AND s.account_pk IN (SELECT account_pk FROM smtp_connection_slots WHERE owner = $1 AND slots > 0)
GROUP BY s.account_pk, a.max_connections, a.connection_cap, a.connection_cap_until
HAVING bool_or(s.owner <> $1 AND s.wanting_until > $2)
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

    Grants stay under the cap, and under the fair share while another sender wants slots; a
    sender granted less than `wanted` is marked wanting for `DEMAND_SECONDS`. Runs in its own
    transaction (the account row lock is held until it ends).
    """
    async with conn.transaction():
        cap = await conn.fetchval(_LOCK, account_pk, now)
        if cap is None:
            return 0
        others = await conn.fetchrow(_OTHERS, account_pk, owner, now)
        mine: int = await conn.fetchval(_MINE, account_pk, owner) or 0
        room: int = int(cap) - int(others["slots"]) - mine
        if others["wanting"]:
            room = min(room, fair_share(int(cap), int(others["interested"]) + 1) - mine)
        granted = max(0, min(wanted, room))
        wanting_until = now + DEMAND_SECONDS if granted < wanted else 0.0
        await conn.execute(
            _SET, account_pk, owner, mine + granted, float(lease_seconds), wanting_until
        )
    return granted


def fair_share(cap: int, senders: int) -> int:
    """Each sender's share of an account's `cap` connections when `senders` hold or want some
    (rounded up, so the whole cap stays usable)."""
    return max(1, math.ceil(cap / max(1, senders)))


async def excess_slots(conn: asyncpg.Connection, *, owner: str, now: float) -> dict[int, int]:
    """Account pk -> slots `owner` holds above its fair share, for the accounts where another
    sender wants slots (accounts without such a sender are absent)."""
    rows = await conn.fetch(_CONTENDED, owner, now)
    excess = {}
    for row in rows:
        above = row["mine"] - fair_share(int(row["cap"]), row["interested"])
        if above > 0:
            excess[row["account_pk"]] = above
    return excess


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
