# SPDX-License-Identifier: Apache-2.0
"""An account's lane: its leased messages in priority order, and its SMTP connections.

Each lane has a priority queue of jobs and up to `max_connections` workers; a worker owns one
SMTP connection and reuses it message after message until it is older than the account's
`ttl`, breaks, or the worker has been idle `idle_seconds` (then it closes it and ends). The
queue is ordered by (priority, arrival), so a priority-0 message leased while the lane is busy
goes ahead of every lower-priority message still waiting: it waits at most for the sends
already in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mail_proxy.db.leases import LeasedMessage
from mail_proxy_sender.delivery.smtp_client import SmtpConnection

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One leased message on its way to the SMTP server."""

    message: LeasedMessage
    account: dict[str, Any] = field(repr=False)  # account + tenant columns, secrets encrypted
    labels: tuple[str, str, str, str]
    seq: int = field(default_factory=itertools.count().__next__)


Deliver = Callable[[Job, SmtpConnection | None], Awaitable[SmtpConnection | None]]


class AccountLane:
    def __init__(
        self,
        account_pk: int,
        *,
        deliver: Deliver,
        max_connections: int,
        idle_seconds: float,
        on_done: Callable[[], None],
    ) -> None:
        self.account_pk = account_pk
        self._deliver = deliver
        self._max = max_connections
        self._idle_seconds = idle_seconds
        self._on_done = on_done
        self._queue: asyncio.PriorityQueue[tuple[int, int, Job]] = asyncio.PriorityQueue()
        self._workers: dict[asyncio.Task[None], Job | None] = {}
        self._closed = False

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def in_progress(self) -> int:
        return sum(1 for job in self._workers.values() if job is not None)

    @property
    def load(self) -> int:
        return self.queued + self.in_progress

    @property
    def idle(self) -> bool:
        return not self._workers and self._queue.empty()

    def submit(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._queue.put_nowait((job.message.priority, job.seq, job))
        self._scale()

    def _scale(self) -> None:
        waiting_workers = sum(1 for job in self._workers.values() if job is None)
        wanted = min(self._max - len(self._workers), self._queue.qsize() - waiting_workers)
        for _ in range(max(0, wanted)):
            task = asyncio.create_task(self._work(), name=f"lane-{self.account_pk}")
            self._workers[task] = None

    def take_queued(self) -> list[Job]:
        """Remove and return every job not started yet."""
        jobs = []
        while not self._queue.empty():
            jobs.append(self._queue.get_nowait()[2])
        return jobs

    async def close(self, grace_seconds: float) -> list[Job]:
        """Stop: unstarted jobs are returned; sends in progress get `grace_seconds` to finish.

        Jobs whose send was cut off are returned too (their outcome is unknown; the caller
        gives them back to the queue).
        """
        self._closed = True
        jobs = self.take_queued()
        for task, job in list(self._workers.items()):
            if job is None:
                task.cancel()  # waiting for work: nothing to finish
        busy = list(self._workers)
        if busy:
            _, pending = await asyncio.wait(busy, timeout=grace_seconds)
            for task in pending:
                job = self._workers.get(task)
                if job is not None:
                    jobs.append(job)
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return jobs

    async def _work(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        conn: SmtpConnection | None = None
        try:
            while not self._closed:
                try:
                    async with asyncio.timeout(self._idle_seconds):
                        _, _, job = await self._queue.get()
                except TimeoutError:
                    break
                self._workers[me] = job
                try:
                    conn = await self._deliver(job, conn)
                except Exception:
                    # A bug, not a delivery failure: keep the lane alive; the lease expires.
                    log.exception("delivery crashed", extra={"action": "delivery_crash"})
                    conn = None
                finally:
                    self._workers[me] = None
                    self._on_done()
        finally:
            self._workers.pop(me, None)
            if not self._closed and not self._queue.empty():
                self._scale()  # work arrived as this worker timed out: hand it on
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(conn.close())
