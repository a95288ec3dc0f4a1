# SPDX-License-Identifier: Apache-2.0
"""An account's lane: its leased messages in priority order, and its SMTP connections.

Each lane has a priority queue of jobs and as many workers as there are queued jobs, within
the account's global connection cap: before starting workers the lane takes connection slots
(`ConnectionSlots`, counted across every sender in Postgres; the dispatcher takes the first ones
before leasing, see `Dispatcher._lease`); a worker holds one slot and one
SMTP connection, and reuses it message after message until it is older than the account's
`ttl`, breaks, or the worker has been idle `idle_seconds` (then it closes it, gives the slot
back and ends). When no slot is free the lane asks again a moment later. The
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
from mail_proxy_sender.delivery.connection_slots import ConnectionSlots
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
_SLOT_RETRY_SECONDS = 0.5


class AccountLane:
    def __init__(
        self,
        account_pk: int,
        *,
        deliver: Deliver,
        slots: ConnectionSlots,
        idle_seconds: float,
        on_done: Callable[[], None],
    ) -> None:
        self.account_pk = account_pk
        self._deliver = deliver
        self._slots = slots
        self._idle_seconds = idle_seconds
        self._on_done = on_done
        self._queue: asyncio.PriorityQueue[tuple[int, int, Job]] = asyncio.PriorityQueue()
        self._workers: dict[asyncio.Task[None], Job | None] = {}
        self._growing: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._retire = 0  # workers asked to end after their current job (cap lowered)
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
    def connections(self) -> int:
        return len(self._workers)

    @property
    def idle(self) -> bool:
        return not self._workers and self._queue.empty() and self._growing is None

    def submit(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._queue.put_nowait((job.message.priority, job.seq, job))
        self._scale()

    def requeue(self, job: Job) -> None:
        """Put a job back unstarted (its connection was refused with 421 "too many")."""
        self._queue.put_nowait((job.message.priority, job.seq, job))

    def retire_one(self) -> None:
        """One worker ends after its current job, giving its connection slot back."""
        self._retire += 1

    def _scale(self) -> None:
        if self._closed or self._growing is not None:
            return
        waiting_workers = sum(1 for job in self._workers.values() if job is None)
        wanted = self._queue.qsize() - waiting_workers
        if wanted > 0:
            self._growing = asyncio.create_task(self._grow(wanted), name=f"grow-{self.account_pk}")

    async def _grow(self, wanted: int) -> None:
        """Take up to `wanted` slots and start one worker per slot granted."""
        try:
            granted = await self._slots.acquire(self.account_pk, wanted)
        finally:
            self._growing = None
        if self._closed:
            if granted:
                await self._slots.release(self.account_pk, granted)
            return
        self.add_workers(granted)
        if granted < wanted and not self._queue.empty() and self._retry is None:
            # At the cap (or the database is away): ask again shortly.
            self._retry = asyncio.get_running_loop().call_later(
                _SLOT_RETRY_SECONDS, self._retry_scale
            )

    @property
    def can_send(self) -> bool:
        """True when the lane has a connection (or is opening some) to send what it is given."""
        return bool(self._workers) or self._growing is not None

    def add_workers(self, count: int) -> None:
        """Start `count` workers on slots the caller already took for this lane."""
        for _ in range(count):
            task = asyncio.create_task(self._work(), name=f"lane-{self.account_pk}")
            self._workers[task] = None

    def shed_idle(self) -> None:
        """End the workers waiting for work now, giving their connections and slots back (this
        sender takes no more work for the account for now; another sender may)."""
        self.give_back(len(self._workers), busy_too=False)

    def give_back(self, count: int, *, busy_too: bool = True) -> None:
        """Close `count` connections and give their slots back: idle workers end now, then
        (with `busy_too`) busy ones after their current message. Asking again while earlier
        requests are pending does not add to them."""
        idle = [task for task, job in self._workers.items() if job is None and not task.done()]
        for task in idle[:count]:
            task.cancel()
        if busy_too:
            self._retire = max(self._retire, count - len(idle[:count]))

    def _retry_scale(self) -> None:
        self._retry = None
        self._scale()

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
        if self._retry is not None:
            self._retry.cancel()
        if self._growing is not None:
            self._growing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._growing
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
                if self._retire:
                    self._retire -= 1
                    break
        finally:
            self._workers.pop(me, None)
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(conn.close())
            await asyncio.shield(self._slots.release(self.account_pk))
            if not self._closed and not self._queue.empty():
                self._scale()  # work arrived as this worker timed out: hand it on
