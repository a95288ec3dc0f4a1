# SPDX-License-Identifier: Apache-2.0
"""The leasing loop: find accounts with ready work, lease batches fairly, feed the lanes.

Each cycle asks Postgres which accounts have ready messages, then
1. leases priority-0 messages of every account that has some, however busy its lane is (they
   jump the lane's queue, so priority 0 never waits behind a batch of lower priorities);
2. visits the other accounts round-robin across tenants (the starting tenant rotates each
   cycle) and leases a batch for each lane that has room, within the process's in-flight cap.
A tenant with a huge backlog thus gets one batch per cycle like everybody else.

It sleeps until woken (NOTIFY, a lane with room) or the polling interval passes, takes back
expired leases now and then, and on close returns every unstarted message to the queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass

import asyncpg

from mail_proxy.config import Settings
from mail_proxy.db.account_health import hold_account, mark_account_ok, report_held
from mail_proxy.db.leases import (
    AccountLease,
    ReadyAccount,
    lease_for_account,
    ready_accounts,
    release,
    throttle_account,
)
from mail_proxy.db.pool import DATABASE_ERRORS
from mail_proxy.metrics import Metrics
from mail_proxy_sender.delivery.connection_slots import ConnectionSlots
from mail_proxy_sender.delivery.failures import AccountFailure
from mail_proxy_sender.delivery.lanes import AccountLane, Deliver, Job
from mail_proxy_sender.delivery.lease_keeper import LeaseKeeper
from mail_proxy_sender.delivery.waiting import first_of
from mail_proxy_sender.maintenance.rescuer import rescue_once

log = logging.getLogger(__name__)
_DB_ERRORS = DATABASE_ERRORS
_SHARE_EVERY_SECONDS = 1.0


@dataclass
class DispatcherDeps:
    pool: asyncpg.Pool
    settings: Settings
    metrics: Metrics
    owner: str
    keeper: LeaseKeeper
    slots: ConnectionSlots


def fair_order(accounts: list[ReadyAccount], rotation: int) -> list[ReadyAccount]:
    """Accounts interleaved tenant by tenant, starting from tenant number `rotation`."""
    by_tenant: dict[str, list[ReadyAccount]] = defaultdict(list)
    for account in sorted(accounts, key=lambda a: a.account_pk):
        by_tenant[account.tenant_id].append(account)
    tenants = sorted(by_tenant)
    if tenants:
        start = rotation % len(tenants)
        tenants = tenants[start:] + tenants[:start]
    ordered: list[ReadyAccount] = []
    depth = max((len(v) for v in by_tenant.values()), default=0)
    for i in range(depth):
        ordered.extend(by_tenant[t][i] for t in tenants if i < len(by_tenant[t]))
    return ordered


class Dispatcher:
    def __init__(self, deps: DispatcherDeps, *, deliver: Deliver, wake: asyncio.Event) -> None:
        self._d = deps
        self._deliver = deliver
        self._wake = wake
        self._lanes: dict[int, AccountLane] = {}
        self._refill_below: dict[int, int] = {}
        self._rotation = 0
        # Expired leases are looked for often, so a dead sender's work resumes within about
        # `lease_seconds` of its death (the query reads a small partial index).
        self._reclaim_every = max(0.5, min(5.0, deps.settings.lease_seconds / 10))

    @property
    def in_flight(self) -> int:
        return sum(lane.load for lane in self._lanes.values())

    async def run(self, stop: asyncio.Event) -> None:
        """Lease and dispatch until `stop` is set."""
        next_reclaim = 0.0
        while not stop.is_set():
            self._wake.clear()
            if time.monotonic() >= next_reclaim:
                await self._reclaim()
                next_reclaim = time.monotonic() + self._reclaim_every
            try:
                leased = await self.cycle()
            except _DB_ERRORS as exc:
                log.warning(
                    "lease cycle failed", extra={"action": "lease_error", "error": repr(exc)}
                )
                leased = 0
            self._forget_idle_lanes()
            if leased and not stop.is_set():
                await asyncio.sleep(0)
                continue
            await first_of(stop, self._wake, timeout=self._d.settings.send_loop_interval_seconds)

    async def share_connections(self, stop: asyncio.Event) -> None:
        """Every second, give back connections held above this sender's fair share of an
        account another sender waits for (`mail_proxy.db.connection_slots`)."""
        while not stop.is_set():
            for account_pk, count in (await self._d.slots.excess()).items():
                lane = self._lanes.get(account_pk)
                if lane is not None:
                    lane.give_back(count)
            await first_of(stop, timeout=_SHARE_EVERY_SECONDS)

    async def cycle(self) -> int:
        """One pass over the ready accounts; returns how many messages were leased."""
        async with self._d.pool.acquire() as conn:
            ready = await ready_accounts(conn, now=time.time())
        if not ready:
            return 0
        leased = 0
        cap = self._d.settings.sender_max_in_flight
        for account in ready:
            if account.urgent:
                leased += await self._lease(account, max_priority=0)
        self._rotation += 1
        for account in fair_order(ready, self._rotation):
            lane = self._lanes.get(account.account_pk)
            if self.in_flight >= cap:
                # This sender takes no more of the account's work for now: its idle connections
                # go, so another sender can have the account's slots (and its ready work).
                if lane is not None:
                    lane.shed_idle()
                continue
            if lane is not None and lane.queued >= self._batch(account):
                continue
            leased += await self._lease(account, max_priority=None)
        return leased

    def _batch(self, account: ReadyAccount) -> int:
        """Messages to lease at a time: enough to keep every allowed connection busy."""
        return max(self._d.settings.batch_size_per_account, account.max_connections)

    async def _lease(self, account: ReadyAccount, *, max_priority: int | None) -> int:
        """Lease a batch of the account's ready messages, only when this sender can send them.

        A sender with no connection to the account takes connection slots first and leases
        nothing when it gets none: the account's connections are all another sender's, and
        that sender takes the work (messages leased here would wait, unsendable, for one of
        those connections to go idle).
        """
        s = self._d.settings
        pk = account.account_pk
        lane = self._lanes.get(pk)
        reserved = 0
        if lane is None or not lane.can_send:
            reserved = await self._d.slots.acquire(pk, self._batch(account))
            if not reserved:
                return 0
        started = time.monotonic()
        now = time.time()
        try:
            async with self._d.pool.acquire() as conn, conn.transaction():
                lease = await lease_for_account(
                    conn,
                    account_pk=pk,
                    owner=self._d.owner,
                    default_batch=self._batch(account),
                    lease_seconds=s.lease_seconds,
                    now=now,
                    max_priority=max_priority,
                )
        except BaseException:
            if reserved:
                await self._d.slots.release(pk, reserved)
            raise
        workers = min(reserved, len(lease.messages))
        if reserved > workers:
            await self._d.slots.release(pk, reserved - workers)
        if lease.account is None:
            return 0
        self._count_rate_limited(lease)
        if lease.messages:
            self._d.keeper.hold((m.pk for m in lease.messages), leased_at=started)
            self._submit(lease, now=now, workers=workers)
        return len(lease.messages)

    def _count_rate_limited(self, lease: AccountLease) -> None:
        assert lease.account is not None
        labels = _labels(lease.account)
        m = self._d.metrics
        limited = len(lease.rate_deferred) + len(lease.rate_rejected)
        if limited:
            m.rate_limited.labels(*labels).inc(limited)
            log.info(
                "rate limit reached",
                extra={
                    "action": "rate_limited",
                    "tenant_id": lease.account["tenant_id"],
                    "account_id": lease.account["id"],
                    "deferred": len(lease.rate_deferred),
                    "rejected": len(lease.rate_rejected),
                    "deferred_until": lease.deferred_until,
                },
            )
        if lease.rate_deferred:
            m.deferred.labels(*labels).inc(len(lease.rate_deferred))

    def _submit(self, lease: AccountLease, *, now: float, workers: int) -> None:
        account = lease.account
        assert account is not None
        labels = _labels(account)
        jobs = []
        for message in lease.messages:
            self._d.metrics.queue_age.observe(max(0.0, now - message.created_ts))
            jobs.append(Job(message, account, labels))
        lane = self._lane(account["pk"], refill_below=len(jobs) // 2)
        lane.add_workers(workers)  # on the slots `_lease` took
        lane.submit(jobs)

    def _lane(self, account_pk: int, *, refill_below: int) -> AccountLane:
        lane = self._lanes.get(account_pk)
        if lane is None:
            lane = AccountLane(
                account_pk,
                deliver=self._deliver,
                slots=self._d.slots,
                idle_seconds=self._d.settings.smtp_idle_seconds,
                on_done=lambda: self._lane_progress(account_pk),
            )
            self._lanes[account_pk] = lane
        self._refill_below[account_pk] = max(
            refill_below, self._d.settings.batch_size_per_account // 2
        )
        return lane

    def _lane_progress(self, account_pk: int) -> None:
        lane = self._lanes.get(account_pk)
        # Refill when the lane's queue runs low, not on every message.
        if lane is not None and lane.queued <= self._refill_below.get(account_pk, 0):
            self._wake.set()

    def _forget_idle_lanes(self) -> None:
        for pk in [pk for pk, lane in self._lanes.items() if lane.idle]:
            del self._lanes[pk]
            self._refill_below.pop(pk, None)

    async def on_throttled(self, job: Job, *, untried: bool = False) -> None:
        """The server said 421/451: back the account off and give back what waits for it;
        with `untried`, `job` too (the server refused the session before anything was sent:
        no attempt is counted against the message)."""
        s = self._d.settings
        lane = self._lanes.get(job.message.account_pk)
        waiting = lane.take_queued() if lane is not None else []
        if untried:
            waiting.append(job)
        try:
            async with self._d.pool.acquire() as conn:
                until = await throttle_account(
                    conn,
                    account_pk=job.message.account_pk,
                    now=time.time(),
                    base_seconds=s.throttle_base_seconds,
                    max_seconds=s.throttle_max_seconds,
                )
                if waiting:
                    pks = [j.message.pk for j in waiting]
                    await release(conn, message_pks=pks, owner=self._d.owner, now=time.time())
                    self._d.keeper.drop(pks)
        except _DB_ERRORS as exc:
            log.warning(
                "cannot back off account", extra={"action": "throttle_error", "error": repr(exc)}
            )
            return
        log.info(
            "account throttled by its server",
            extra={"action": "throttled", "account_id": job.account["id"], "until": until},
        )

    async def on_too_many_connections(self, job: Job) -> bool:
        """A new connection was refused with 421: lower the account's cap for a while and put
        the job back for a connection already open. False when this lane has no other
        connection (then the failure is handled like any 421)."""
        lane = self._lanes.get(job.message.account_pk)
        if lane is None or lane.connections <= 1:
            return False
        await self._d.slots.lower_cap(
            job.message.account_pk, for_seconds=self._d.settings.throttle_base_seconds
        )
        lane.requeue(job)
        lane.retire_one()
        return True

    async def on_account_failure(self, job: Job, failure: AccountFailure) -> None:
        """The account cannot open a session: hold its queue until the next probe (messages
        go back unsent, their attempt not counted, each with one `deferred` event naming the
        reason per hold) and mark it unhealthy with the reason."""
        s = self._d.settings
        lane = self._lanes.get(job.message.account_pk)
        waiting = [job, *(lane.take_queued() if lane is not None else [])]
        pks = [j.message.pk for j in waiting]
        try:
            async with self._d.pool.acquire() as conn, conn.transaction():
                until = await hold_account(
                    conn,
                    account_pk=job.message.account_pk,
                    reason=failure.reason,
                    now=time.time(),
                    base_seconds=s.account_probe_base_seconds,
                    max_seconds=s.account_probe_max_seconds,
                )
                await release(conn, message_pks=pks, owner=self._d.owner, now=time.time())
                # Apps see why their messages wait: one `deferred` event per message per hold.
                await report_held(
                    conn, message_pks=pks, reason=failure.reason, until=until, now=time.time()
                )
            self._d.keeper.drop(pks)
        except _DB_ERRORS as exc:
            log.warning("cannot hold account", extra={"action": "hold_error", "error": repr(exc)})
            return
        log.warning(
            "account unhealthy: queue held",
            extra={
                "action": "account_held",
                "tenant_id": job.account["tenant_id"],
                "account_id": job.account["id"],
                "reason": failure.reason,
                "until": until,
            },
        )

    async def on_account_ok(self, job: Job) -> None:
        """A session opened for an account not known healthy: it is (again)."""
        try:
            async with self._d.pool.acquire() as conn:
                changed = await mark_account_ok(conn, account_pk=job.message.account_pk)
        except _DB_ERRORS as exc:
            log.warning(
                "cannot mark account ok", extra={"action": "health_error", "error": repr(exc)}
            )
            return
        job.account["health"] = "ok"  # the lane's other jobs share this row
        if changed:
            log.info(
                "account healthy",
                extra={
                    "action": "account_ok",
                    "tenant_id": job.account["tenant_id"],
                    "account_id": job.account["id"],
                },
            )

    async def _reclaim(self) -> None:
        if not self._d.keeper.may_rescue():
            return  # just started, or back from an outage: owners renew first (lease_keeper)
        try:
            # Each lapsed lease counts as an attempt (maintenance/rescuer.py).
            await rescue_once(self._d.pool, self._d.settings)
        except _DB_ERRORS as exc:
            log.warning(
                "cannot reclaim leases", extra={"action": "reclaim_error", "error": repr(exc)}
            )

    async def close(self, grace_seconds: float) -> None:
        """Let sends in progress finish (up to `grace_seconds`); give the rest back."""
        lanes = list(self._lanes.values())
        leftovers = await asyncio.gather(*(lane.close(grace_seconds) for lane in lanes))
        pks = [job.message.pk for jobs in leftovers for job in jobs]
        if not pks:
            return
        try:
            async with self._d.pool.acquire() as conn:
                count = await release(conn, message_pks=pks, owner=self._d.owner, now=time.time())
            self._d.keeper.drop(pks)
        except _DB_ERRORS as exc:
            log.warning(
                "cannot release leases", extra={"action": "release_error", "error": repr(exc)}
            )
            return
        log.info("released unsent leases", extra={"action": "released", "count": count})


def _labels(account: dict[str, object]) -> tuple[str, str, str, str]:
    tenant_id = str(account["tenant_id"])
    return (
        tenant_id,
        str(account["tenant_name"] or tenant_id),
        str(account["id"]),
        str(account["id"]),
    )
