# SPDX-License-Identifier: Apache-2.0
"""Writes outcomes to Postgres as soon as they are known, a few at a time.

Outcomes queue up in memory and a single task stores them in small batches (one statement per
batch, at most `outcome_flush_seconds` after the first one arrived). A database hiccup keeps
them queued and retried: a process that stays alive loses no outcome. The time between the
SMTP server's acceptance and this commit is the only window in which a crash causes a
duplicate send.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from mail_proxy.db.outcomes import Outcome, record_outcomes
from mail_proxy.db.pool import DATABASE_ERRORS
from mail_proxy.metrics import Metrics
from mail_proxy.states import MessageState

log = logging.getLogger(__name__)

_MAX_BATCH = 200


@dataclass(frozen=True)
class Recorded:
    """An outcome with what the metrics need to count it."""

    outcome: Outcome
    labels: tuple[str, str, str, str]  # tenant_id, tenant_name, account_id, account_name
    created_ts: float


class OutcomeWriter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        owner: str,
        metrics: Metrics,
        flush_seconds: float,
        on_recorded: Callable[[], None] = lambda: None,
        on_stored: Callable[[list[int]], None] = lambda pks: None,
    ) -> None:
        self._pool = pool
        self._owner = owner
        self._metrics = metrics
        self._flush_seconds = flush_seconds
        self._on_recorded = on_recorded
        self._on_stored = on_stored
        self._pending: list[Recorded] = []
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    @property
    def unstored(self) -> int:
        """Outcomes queued and not stored yet."""
        return len(self._pending)

    def put(self, item: Recorded) -> None:
        self._pending.append(item)
        self._idle.clear()
        self._arrived.set()

    async def run(self) -> None:
        """Store outcomes until `close()` was called and nothing is left."""
        while not (self._closing and not self._pending):
            await self._arrived.wait()
            if not self._closing:
                await asyncio.sleep(self._flush_seconds)
            self._arrived.clear()
            while self._pending:
                batch = self._pending[:_MAX_BATCH]
                if not await self._store(batch):
                    await asyncio.sleep(1.0)  # the database is away; keep them and try again
                    if self._closing:
                        break
                    continue
                del self._pending[: len(batch)]
            if not self._pending:
                self._idle.set()

    async def close(self, timeout_seconds: float = 10.0) -> None:
        """Flush what is queued (trying for at most `timeout_seconds`)."""
        self._closing = True
        self._arrived.set()
        try:
            async with asyncio.timeout(timeout_seconds):
                await self._idle.wait()
        except TimeoutError:
            log.error(
                "outcomes not stored at shutdown",
                extra={"action": "outcomes_lost", "count": self.unstored},
            )

    async def _store(self, batch: list[Recorded]) -> bool:
        try:
            async with self._pool.acquire() as conn:
                changed = await record_outcomes(
                    conn, outcomes=[r.outcome for r in batch], owner=self._owner
                )
        except DATABASE_ERRORS as exc:
            log.warning(
                "cannot store outcomes yet",
                extra={"action": "outcomes_retry", "error": type(exc).__name__},
            )
            return False
        self._on_stored([r.outcome.message_pk for r in batch])
        self._count(batch, changed)
        self._on_recorded()
        return True

    def _count(self, batch: list[Recorded], changed: set[int]) -> None:
        now = time.time()
        m = self._metrics
        for item in batch:
            outcome = item.outcome
            if outcome.message_pk not in changed:
                log.info(
                    "outcome not recorded: lease lost",
                    extra={"action": "lease_lost", "message_pk": outcome.message_pk},
                )
                continue
            if outcome.state == MessageState.SENT:
                m.sent.labels(*item.labels).inc()
                m.delivery_latency.observe(max(0.0, (outcome.sent_at or now) - item.created_ts))
            elif outcome.state == MessageState.DEFERRED:
                m.deferred.labels(*item.labels).inc()
            else:
                m.errors.labels(*item.labels).inc()
