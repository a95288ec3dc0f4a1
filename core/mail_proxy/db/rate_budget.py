# SPDX-License-Identifier: Apache-2.0
"""Rate budgets: how many more messages an account (or tenant) may send right now.

Counted in Postgres from `send_log` (what SMTP servers accepted) plus the rows senders hold
leased now (reserved slots), so every pod sees the same numbers. The caller holds the account's
row lock (`leases.lease_for_account`), which makes "count, then lease" exact across processes:
a limit is never exceeded, even by a moment's concurrency.

Windows slide (the last 60/3600/86400 s), so a day limit does not release a burst at midnight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

MINUTE, HOUR, DAY = 60, 3600, 86400


@dataclass(frozen=True)
class RateLimits:
    """(window seconds, limit) pairs that apply; empty means unlimited."""

    windows: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of_account(cls, row: Mapping[str, Any]) -> RateLimits:
        pairs = (
            (MINUTE, row["limit_per_minute"]),
            (HOUR, row["limit_per_hour"]),
            (DAY, row["limit_per_day"]),
        )
        return cls(tuple((w, int(n)) for w, n in pairs if n is not None and n > 0))

    @classmethod
    def of_tenant(cls, rate_limits: Mapping[str, Any] | None) -> RateLimits:
        """The tenant's documented `{"hourly": n, "daily": n}` (0 or missing = unlimited)."""
        if not rate_limits:
            return cls()
        pairs = ((HOUR, rate_limits.get("hourly")), (DAY, rate_limits.get("daily")))
        return cls(tuple((w, int(n)) for w, n in pairs if isinstance(n, int) and n > 0))


@dataclass(frozen=True)
class RateBudget:
    """`available` slots now (None = unlimited); when 0, `free_at` is when one frees."""

    available: int | None
    free_at: float | None = None

    def combine(self, other: RateBudget) -> RateBudget:
        if self.available is None:
            return other
        if other.available is None:
            return self
        available = min(self.available, other.available)
        frees = [b.free_at for b in (self, other) if b.available == 0 and b.free_at is not None]
        return RateBudget(available, max(frees) if frees else None)


UNLIMITED = RateBudget(None)

_ACCOUNT_SENT = """
SELECT (SELECT count(*) FROM send_log WHERE account_pk = $1 AND sent_at > s.start)::int
FROM unnest($2::float8[]) WITH ORDINALITY AS s(start, ord) ORDER BY s.ord
"""
_ACCOUNT_LEASED = "SELECT count(*)::int FROM messages WHERE account_pk = $1 AND state = 'sending'"
_ACCOUNT_NTH = """
SELECT sent_at FROM send_log WHERE account_pk = $1 AND sent_at > $2
ORDER BY sent_at OFFSET $3 LIMIT 1
"""
_TENANT_SENT = """
SELECT (SELECT count(*) FROM send_log WHERE tenant_id = $1 AND sent_at > s.start)::int
FROM unnest($2::float8[]) WITH ORDINALITY AS s(start, ord) ORDER BY s.ord
"""
_TENANT_LEASED = "SELECT count(*)::int FROM messages WHERE tenant_id = $1 AND state = 'sending'"
_TENANT_NTH = """
SELECT sent_at FROM send_log WHERE tenant_id = $1 AND sent_at > $2
ORDER BY sent_at OFFSET $3 LIMIT 1
"""


def slots_needed(*, sent: int, leased: int, limit: int) -> int:
    """How many sends must leave the window before one more fits (0 = there is room)."""
    return max(0, sent + leased - limit + 1)


async def _budget(
    conn: asyncpg.Connection,
    key: object,
    limits: RateLimits,
    now: float,
    queries: tuple[str, str, str],
) -> RateBudget:
    if not limits.windows:
        return UNLIMITED
    sent_sql, leased_sql, nth_sql = queries
    starts = [now - window for window, _ in limits.windows]
    sent: Sequence[asyncpg.Record] = await conn.fetch(sent_sql, key, starts)
    leased: int = await conn.fetchval(leased_sql, key)
    available: int | None = None
    free_at: float | None = None
    for (window, limit), row in zip(limits.windows, sent, strict=True):
        count = int(row[0])
        room = max(0, limit - count - leased)
        available = room if available is None else min(available, room)
        need = slots_needed(sent=count, leased=leased, limit=limit)
        if need == 0:
            continue
        # The need-th oldest send in the window leaves it at (its time + window); when even
        # every logged send is not enough, the leased ones must be sent and age out first.
        oldest = (
            await conn.fetchval(nth_sql, key, now - window, need - 1) if need <= count else None
        )
        frees = (oldest + window) if oldest is not None else now + window
        free_at = frees if free_at is None else max(free_at, frees)
    return RateBudget(available, free_at)


async def account_budget(
    conn: asyncpg.Connection, *, account_pk: int, limits: RateLimits, now: float
) -> RateBudget:
    """The account's budget; call with the account row locked."""
    return await _budget(
        conn, account_pk, limits, now, (_ACCOUNT_SENT, _ACCOUNT_LEASED, _ACCOUNT_NTH)
    )


async def tenant_budget(
    conn: asyncpg.Connection, *, tenant_id: str, limits: RateLimits, now: float
) -> RateBudget:
    """The tenant's budget across its accounts; call with the tenant row locked."""
    return await _budget(conn, tenant_id, limits, now, (_TENANT_SENT, _TENANT_LEASED, _TENANT_NTH))
