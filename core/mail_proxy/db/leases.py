# SPDX-License-Identifier: Apache-2.0
"""Leasing work: which accounts have ready messages, and taking a batch of them.

Ready means: state `pending`, or `deferred` whose `deferred_ts` has come; the tenant is active
and has not suspended the message's batch (`suspended_batches` '*' or a list of codes); the
account is neither throttled (rate back-off), nor waiting for a rate-limit slot, nor held for an
account-level failure until its next probe (`health_retry_at`, see db/account_health).

`lease_for_account` runs in ONE short transaction the caller opens: it locks the account row
(`FOR NO KEY UPDATE`: leasers of that account queue up across processes, while inserts that
reference the account are not blocked), computes the rate budget, leases up to
min(budget, batch) rows `FOR UPDATE SKIP LOCKED` in priority then arrival order, and settles the
rows the budget left out: deferred to the moment a slot frees (event `deferred`, reason
`rate_limit`) or failed with `rate_limit_exceeded` when the account says `reject`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from mail_proxy.db.rate_budget import RateBudget, RateLimits, account_budget, tenant_budget

RATE_LIMIT_REASON = "rate_limit"
RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"


def _ready(codes: str) -> str:
    """The ready condition on `m`; $1 = now (epoch s), `codes` = suspended batch codes."""
    return (
        "m.state IN ('pending', 'deferred') AND (m.state = 'pending' OR m.deferred_ts <= $1) "
        f"AND (m.batch_code IS NULL OR NOT (m.batch_code = ANY ({codes})))"
    )


_READY_ACCOUNTS = f"""
SELECT a.pk, a.tenant_id, a.max_connections,
       EXISTS (SELECT 1 FROM messages m WHERE m.account_pk = a.pk AND m.priority = 0
               AND {_ready("tn.codes")}) AS urgent
FROM accounts a
JOIN LATERAL (
    SELECT t.active, t.suspended_batches,
           coalesce(string_to_array(t.suspended_batches, ','), '{{}}'::text[]) AS codes
    FROM tenants t WHERE t.id = a.tenant_id
) tn ON true
WHERE tn.active AND tn.suspended_batches IS DISTINCT FROM '*'
  AND coalesce(a.throttle_until, 0) <= $1 AND coalesce(a.rate_free_at, 0) <= $1
  AND coalesce(a.health_retry_at, 0) <= $1
  -- OFFSET 0 keeps this a per-account index probe: without it the planner turns EXISTS into
  -- a hash semi-join over every ready message, and the query grows with the backlog.
  AND EXISTS (SELECT 1 FROM messages m WHERE m.account_pk = a.pk
              AND {_ready("tn.codes")} OFFSET 0)
"""

_LOCK_ACCOUNT = """
SELECT a.pk, a.id, a.tenant_id, a.host, a.port, a.username, a.password, a.use_tls,
       a.tls_verify, a.ttl, a.limit_per_minute, a.limit_per_hour, a.limit_per_day,
       a.limit_behavior, a.batch_size, a.throttle_until, a.rate_free_at, a.max_connections,
       a.health, a.health_retry_at,
       t.name AS tenant_name, t.active, t.suspended_batches, t.rate_limits,
       t.client_base_url, t.client_attachment_path, t.client_auth, t.large_file_config
FROM accounts a JOIN tenants t ON t.id = a.tenant_id
WHERE a.pk = $1
FOR NO KEY UPDATE OF a
"""
_LOCK_TENANT = "SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE"

# $3 account, $4 max priority (NULL = any), $5 how many.
_PICK = f"""
SELECT m.pk FROM messages m
WHERE m.account_pk = $3 AND {_ready("$2::text[]")} AND ($4::smallint IS NULL OR m.priority <= $4)
ORDER BY m.priority, m.pk
LIMIT $5
FOR UPDATE SKIP LOCKED
"""

_LEASE = f"""
WITH picked AS ({_PICK})
UPDATE messages m
SET state = 'sending', lease_owner = $6, lease_until = now() + make_interval(secs => $7),
    attempts = m.attempts + 1, updated_at = now()
FROM picked WHERE m.pk = picked.pk
RETURNING m.pk, m.id, m.tenant_id, m.account_pk, m.priority, m.payload, m.attempts,
          m.deferred_ts, extract(epoch FROM m.created_at)::float8 AS created_ts, m.rendered,
          (SELECT jsonb_agg(jsonb_build_object('address', r.address, 'status', r.status,
                                               'code', r.code, 'reason', r.reason))
           FROM message_recipients r WHERE r.message_pk = m.pk) AS recipients
"""

_DEFER_RATE_LIMITED = f"""
WITH picked AS ({_PICK}),
upd AS (
    UPDATE messages m SET state = 'deferred', deferred_ts = $6, updated_at = now()
    FROM picked WHERE m.pk = picked.pk
    RETURNING m.pk, m.tenant_id, m.id
),
ev AS (
    INSERT INTO message_events (message_pk, tenant_id, message_id, event_type, event_ts,
                                description, metadata)
    SELECT pk, tenant_id, id, 'deferred', $1, '{RATE_LIMIT_REASON}', $7::text::jsonb FROM upd
)
SELECT pk, id FROM upd
"""
_REJECT_RATE_LIMITED = f"""
WITH picked AS ({_PICK}),
upd AS (
    UPDATE messages m SET state = 'error', error = '{RATE_LIMIT_EXCEEDED}', error_ts = $1,
                          smtp_ts = $1, updated_at = now()
    FROM picked WHERE m.pk = picked.pk
    RETURNING m.pk, m.tenant_id, m.id
),
ev AS (
    INSERT INTO message_events (message_pk, tenant_id, message_id, event_type, event_ts,
                                description)
    SELECT pk, tenant_id, id, 'error', $1, '{RATE_LIMIT_EXCEEDED}' FROM upd
)
SELECT pk, id FROM upd
"""
_SET_RATE_FREE_AT = "UPDATE accounts SET rate_free_at = $2 WHERE pk = $1"


@dataclass(frozen=True)
class ReadyAccount:
    account_pk: int
    tenant_id: str
    urgent: bool  # has ready priority-0 work
    max_connections: int = 20


@dataclass(frozen=True)
class LeasedMessage:
    pk: int
    id: str
    tenant_id: str
    account_pk: int
    priority: int
    payload: dict[str, Any]
    attempts: int  # including this one
    deferred_ts: int | None
    created_ts: float
    rendered: bytes | None = None  # the message as built by an earlier attempt (`rendered`)
    # What earlier attempts settled per recipient (message_recipients), None when nothing.
    recipients: list[dict[str, Any]] | None = None


@dataclass
class AccountLease:
    """What one lease transaction took, and what the rate limit settled instead."""

    account: dict[str, Any] | None  # account + tenant columns; None when nothing was possible
    messages: list[LeasedMessage] = field(default_factory=list)
    rate_deferred: list[str] = field(default_factory=list)  # client ids
    rate_rejected: list[str] = field(default_factory=list)
    deferred_until: int | None = None


async def ready_accounts(conn: asyncpg.Connection, *, now: float) -> list[ReadyAccount]:
    """Accounts with ready work right now (any order; the caller decides fairness)."""
    rows = await conn.fetch(_READY_ACCOUNTS, int(now))
    return [ReadyAccount(r["pk"], r["tenant_id"], r["urgent"], r["max_connections"]) for r in rows]


def _codes(suspended: str | None) -> list[str]:
    return [code for code in (suspended or "").split(",") if code]


async def lease_for_account(
    conn: asyncpg.Connection,
    *,
    account_pk: int,
    owner: str,
    default_batch: int,
    lease_seconds: float,
    now: float,
    max_priority: int | None = None,
) -> AccountLease:
    """Lease ready messages of one account; run inside a transaction. See the module doc.

    The batch is the account's `batch_size`, else `default_batch`; `max_priority` 0 leases
    only priority-0 messages (the urgent pass).
    """
    row = await conn.fetchrow(_LOCK_ACCOUNT, account_pk)
    if row is None:
        return AccountLease(None)
    account = dict(row.items())
    if (
        not account["active"]
        or account["suspended_batches"] == "*"
        or (account["throttle_until"] or 0) > now
        or (account["rate_free_at"] or 0) > now
        or (account["health_retry_at"] or 0) > now
    ):
        return AccountLease(None)
    size = account["batch_size"] or default_batch
    budget = await _budget(conn, account, now)
    want = size if budget.available is None else min(size, budget.available)
    ts = int(now)
    codes = _codes(account["suspended_batches"])
    leased: list[LeasedMessage] = []
    if want > 0:
        rows = await conn.fetch(
            _LEASE, ts, codes, account_pk, max_priority, want, owner, float(lease_seconds)
        )
        leased = sorted(
            (LeasedMessage(**dict(r.items())) for r in rows), key=lambda m: (m.priority, m.pk)
        )
    lease = AccountLease(account, leased)
    if budget.available is not None and len(leased) >= budget.available and size > len(leased):
        # Counted again with this lease's rows reserved, to know when the next slot frees.
        after = await _budget(conn, account, now)
        await _settle_over_budget(
            conn, lease, after, ts, codes, account_pk, max_priority, size - len(leased)
        )
    return lease


async def _budget(conn: asyncpg.Connection, account: dict[str, Any], now: float) -> RateBudget:
    """The account's budget, narrowed by its tenant's (whose row is then locked too)."""
    budget = await account_budget(
        conn, account_pk=account["pk"], limits=RateLimits.of_account(account), now=now
    )
    tenant_limits = RateLimits.of_tenant(account["rate_limits"])
    if tenant_limits.windows:
        await conn.execute(_LOCK_TENANT, account["tenant_id"])
        budget = budget.combine(
            await tenant_budget(conn, tenant_id=account["tenant_id"], limits=tenant_limits, now=now)
        )
    return budget


async def _settle_over_budget(
    conn: asyncpg.Connection,
    lease: AccountLease,
    budget: RateBudget,
    ts: int,
    codes: list[str],
    account_pk: int,
    max_priority: int | None,
    count: int,
) -> None:
    """The rows next in line that the budget left out: defer them to a free slot, or reject."""
    assert lease.account is not None
    if lease.account["limit_behavior"] == "reject":
        rows = await conn.fetch(_REJECT_RATE_LIMITED, ts, codes, account_pk, max_priority, count)
        lease.rate_rejected = [r["id"] for r in rows]
        return
    free_at = budget.free_at if budget.free_at is not None else ts + 1.0
    until = max(int(free_at) + (free_at > int(free_at)), ts + 1)
    meta = json.dumps({"deferred_ts": until, "reason": RATE_LIMIT_REASON})
    rows = await conn.fetch(
        _DEFER_RATE_LIMITED, ts, codes, account_pk, max_priority, count, until, meta
    )
    lease.rate_deferred = [r["id"] for r in rows]
    if rows:
        lease.deferred_until = until
        # The account is skipped until then; the rest of its queue waits without churning.
        await conn.execute(_SET_RATE_FREE_AT, account_pk, float(until))


_RELEASE = """
UPDATE messages
SET state = CASE WHEN deferred_ts > $3 THEN 'deferred' ELSE 'pending' END,
    lease_owner = NULL, lease_until = NULL, attempts = greatest(attempts - 1, 0), updated_at = now()
WHERE pk = ANY ($1::bigint[]) AND lease_owner = $2 AND state = 'sending'
"""

_RENEW = """
UPDATE messages SET lease_until = now() + make_interval(secs => $3)
WHERE pk = ANY ($1::bigint[]) AND lease_owner = $2 AND state = 'sending'
RETURNING pk
"""

_THROTTLE = """
UPDATE accounts
SET throttle_until = $2 + least($4::float8, $3::float8 * power(2, throttle_level)),
    throttle_level = throttle_level + 1
WHERE pk = $1 AND coalesce(throttle_until, 0) <= $2
RETURNING throttle_until
"""


async def release(
    conn: asyncpg.Connection, *, message_pks: list[int], owner: str, now: float
) -> int:
    """Give leased messages back untried (shutdown, back-off): they are ready again at once."""
    status: str = await conn.execute(_RELEASE, message_pks, owner, int(now))
    return int(status.split()[-1])


async def renew_leases(
    conn: asyncpg.Connection, *, message_pks: list[int], owner: str, lease_seconds: float
) -> set[int]:
    """Extend `owner`'s leases on `message_pks` to now + `lease_seconds` (the heartbeat).

    Returns the pks still held; a missing pk was taken back (its lease had run out) or settled.
    """
    rows = await conn.fetch(_RENEW, message_pks, owner, float(lease_seconds))
    return {r["pk"] for r in rows}


async def throttle_account(
    conn: asyncpg.Connection,
    *,
    account_pk: int,
    now: float,
    base_seconds: float,
    max_seconds: float,
) -> float | None:
    """Back off an account that answered 421/451, doubling while it keeps doing so.

    Returns the new `throttle_until`, or None when another sender has already backed it off.
    """
    until: float | None = await conn.fetchval(_THROTTLE, account_pk, now, base_seconds, max_seconds)
    return until
