# SPDX-License-Identifier: Apache-2.0
"""Retention (SPEC section 3): what the service forgets, and when.

- final messages (`sent`/`error`) whose events were all reported before the cutoff, with their
  events (foreign-key cascade); messages with an unreported event are kept;
- rate history older than the longest window (a day);
- the command log, when `command_log_retention_seconds` is set;
- idempotency keys older than their TTL (`idempotency_ttl_seconds`);
- finished webhook deliveries (delivered or given up) and the provider notifications already
  applied (their duplicate guard), older than the report retention.

Deletes run in bounded batches so no statement holds locks for long; one pod purges at a time
(advisory lock), the others skip.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from mail_proxy.db.idempotency import purge_keys
from mail_proxy.db.pool import session_lock
from mail_proxy.db.provider_feedback import purge_seen
from mail_proxy.db.rate_budget import DAY
from mail_proxy.db.webhooks import purge_deliveries

# "mail-ret" in ASCII: distinct from the migration runner's key.
_LOCK_KEY = 0x6D61696C2D726574
_BATCH = 5000

_PURGE_MESSAGES = """
DELETE FROM messages WHERE pk IN (
    SELECT m.pk FROM messages m
    WHERE m.state IN ('sent', 'error') AND m.smtp_ts < $1
      AND NOT EXISTS (SELECT 1 FROM message_events e WHERE e.message_pk = m.pk
                      AND (e.reported_ts IS NULL OR e.reported_ts >= $1))
    LIMIT $2
)
"""
_PURGE_SEND_LOG = """
DELETE FROM send_log WHERE id IN (SELECT id FROM send_log WHERE sent_at < $1 LIMIT $2)
"""
_PURGE_COMMAND_LOG = """
DELETE FROM command_log WHERE id IN (SELECT id FROM command_log WHERE command_ts < $1 LIMIT $2)
"""


class _BatchPurge(Protocol):
    def __call__(
        self, conn: asyncpg.Connection, *, before: float, batch: int
    ) -> Awaitable[int]: ...


@dataclass(frozen=True)
class Purged:
    messages: int = 0
    send_log: int = 0
    command_log: int = 0
    idempotency_keys: int = 0
    webhook_deliveries: int = 0
    provider_notifications: int = 0


async def _drain(conn: asyncpg.Connection, sql: str, cutoff: float) -> int:
    total = 0
    while True:
        status: str = await conn.execute(sql, cutoff, _BATCH)
        count = int(status.split()[-1])
        total += count
        if count < _BATCH:
            return total


async def _drain_with(conn: asyncpg.Connection, purge_batch: _BatchPurge, before: float) -> int:
    total = 0
    while True:
        count = await purge_batch(conn, before=before, batch=_BATCH)
        total += count
        if count < _BATCH:
            return total


async def purge(
    conn: asyncpg.Connection,
    *,
    now: float,
    report_retention_seconds: int,
    command_log_retention_seconds: int | None,
    idempotency_ttl_seconds: float = 86_400,
) -> Purged | None:
    """Apply retention; None when another pod is doing it right now."""
    async with session_lock(conn, _LOCK_KEY) as taken:
        if not taken:
            return None
        messages = 0
        if report_retention_seconds > 0:
            messages = await _drain(conn, _PURGE_MESSAGES, int(now - report_retention_seconds))
        send_log = await _drain(conn, _PURGE_SEND_LOG, now - DAY)
        commands = 0
        if command_log_retention_seconds is not None and command_log_retention_seconds > 0:
            commands = await _drain(
                conn, _PURGE_COMMAND_LOG, int(now - command_log_retention_seconds)
            )
        keys = await _drain_with(conn, purge_keys, now - idempotency_ttl_seconds)
        deliveries = notifications = 0
        if report_retention_seconds > 0:
            cutoff = now - report_retention_seconds
            deliveries = await _drain_with(conn, purge_deliveries, cutoff)
            notifications = await _drain_with(conn, purge_seen, cutoff)
        return Purged(messages, send_log, commands, keys, deliveries, notifications)
