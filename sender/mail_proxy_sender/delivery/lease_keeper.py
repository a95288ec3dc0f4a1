# SPDX-License-Identifier: Apache-2.0
"""The leases this sender holds, renewed while it lives (a heartbeat), so they can stay short.

A message is held from the moment it is leased until its outcome is stored (or it is given
back). Every `lease_seconds / 3` the keeper extends the lease of every held message by
`lease_seconds` in one statement. A sender that dies stops renewing, so its messages are free
at most `lease_seconds` after its death; a live sender in a slow SMTP transaction keeps its
lease however long the transaction takes, so no other sender takes a message still being sent.

`may_start(pk)` says whether a send may begin: the lease must be known valid for a margin
longer (`lease_seconds / 5`). When renewals fail (Postgres is away) held leases run out, and
messages not started yet wait (`startable(pk)`) for the next successful renewal, up to
`_OUTAGE_WAIT_LEASES` leases: their lease is still this sender's when Postgres returns
(nobody takes it back meanwhile, see below), so they are sent then, unsent meanwhile; when a
renewal finds a lease taken back by another sender, that message is marked lost and never
started here.

Outages and duplicates. A lease that ran out while Postgres was away does not mean its sender
died: it may hold the outcome of a message the SMTP server accepted (issue 13 item 3), queued
in its outcome writer. So a lease that runs out is taken back only by a sender in continuous
contact with Postgres for a whole `lease_seconds` (`may_rescue()`), measured by this
heartbeat: a failed renewal, or more than `lease_seconds / 2` from the start of one successful
renewal to the end of the next (an outage, a renewal that hung, a stalled process), starts
the count again, and so does the start of the process. Why that suffices: a live sender's
lease runs out only when all its renewals (every `lease_seconds / 3`, every second after a
failure) fail for a whole lease, i.e. Postgres was unreachable for at least two thirds of one;
every rescuer's own heartbeat sees such an outage, so none takes anything back until
`lease_seconds` after Postgres is reachable again, while the live owner renews its leases
(a renewal takes back a lapsed lease it still owns, see `renew_leases`) and stores its
outcomes within about a second. Not covered: a sender cut off from Postgres while the others
reach it, which nobody can tell from a dead one (its accepted messages may be sent twice).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import asyncpg

from mail_proxy.db.leases import renew_leases
from mail_proxy.db.pool import DATABASE_ERRORS
from mail_proxy_sender.delivery.waiting import first_of

log = logging.getLogger(__name__)
_DB_ERRORS = DATABASE_ERRORS
# How long (in leases) a message whose lease ran out during an outage waits for a renewal
# before it is left to be taken back.
_OUTAGE_WAIT_LEASES = 10


class LeaseKeeper:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        owner: str,
        lease_seconds: float,
        also_renew: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    ) -> None:
        self._pool = pool
        self._also_renew = also_renew  # other leases of this sender (connection slots)
        self._owner = owner
        self._lease = float(lease_seconds)
        self._margin = self._lease / 5
        self.renew_every = self._lease / 3
        # pk -> monotonic time until which a send may still start
        self._valid_until: dict[int, float] = {}
        self.renewals_failed = 0  # consecutive; reset by a successful renewal
        # Continuous contact with Postgres (see the module doc): since when (monotonic), and
        # the start of the last successful renewal.
        self._max_gap = self._lease / 2
        self._contact_since: float | None = None
        self._last_ok_started: float | None = None
        self._renewed = asyncio.Event()  # set (and replaced) by each successful renewal

    @property
    def held(self) -> int:
        return len(self._valid_until)

    def hold(self, pks: Iterable[int], *, leased_at: float) -> None:
        """Messages just leased; `leased_at` is the monotonic time before the lease statement."""
        until = leased_at + self._lease - self._margin
        for pk in pks:
            self._valid_until[pk] = until

    def may_start(self, pk: int) -> bool:
        """True while the lease on `pk` is held and valid for at least the margin."""
        return time.monotonic() < self._valid_until.get(pk, 0.0)

    async def startable(self, pk: int) -> bool:
        """`may_start(pk)`, waiting while renewals fail (Postgres is away) for the next one to
        succeed, up to `_OUTAGE_WAIT_LEASES` leases; False when the lease was lost (or never
        held) or the wait ran out."""
        deadline = time.monotonic() + self._lease * _OUTAGE_WAIT_LEASES
        while not self.may_start(pk):
            left = deadline - time.monotonic()
            if pk not in self._valid_until or left <= 0:
                return False
            try:
                async with asyncio.timeout(left):
                    await self._renewed.wait()
            except TimeoutError:
                return False
        return True

    def may_rescue(self) -> bool:
        """True when this sender has been in continuous contact with Postgres for a whole
        `lease_seconds`: only then may it take back leases that ran out (module doc)."""
        since = self._contact_since
        return since is not None and time.monotonic() - since >= self._lease

    def drop(self, pks: Iterable[int]) -> None:
        """Stop renewing: the outcome is stored, the message was given back or its lease lost."""
        for pk in pks:
            self._valid_until.pop(pk, None)

    async def renew(self) -> bool:
        """Extend every held lease now; returns False when Postgres could not be reached."""
        pks = list(self._valid_until)
        started = time.monotonic()
        try:
            async with self._pool.acquire() as conn:
                # Run even with nothing held: the round trip is the heartbeat `may_rescue`
                # relies on.
                renewed = await renew_leases(
                    conn, message_pks=pks, owner=self._owner, lease_seconds=self._lease
                )
                if self._also_renew is not None:
                    await self._also_renew(conn)
        except _DB_ERRORS as exc:
            self.renewals_failed += 1
            self._contact_since = None
            log.warning(
                "cannot renew leases", extra={"action": "lease_renew_error", "error": repr(exc)}
            )
            return False
        self.renewals_failed = 0
        self._count_contact(started)
        until = started + self._lease - self._margin
        lost = []
        for pk in pks:
            if pk not in self._valid_until:
                continue  # its outcome was stored meanwhile
            if pk in renewed:
                self._valid_until[pk] = until
            else:
                lost.append(pk)
        if lost:
            # Taken back by another sender (this one stalled past its lease): never start them.
            self.drop(lost)
            log.warning("leases lost", extra={"action": "lease_lost", "count": len(lost)})
        self._renewed.set()  # sends waiting for a renewal (`startable`) go on, or give up
        self._renewed = asyncio.Event()
        return True

    def _count_contact(self, started: float) -> None:
        finished = time.monotonic()
        last, self._last_ok_started = self._last_ok_started, started
        if self._contact_since is None or last is None:
            self._contact_since = finished  # the first renewal, or the first after a failure
        elif finished - last > self._max_gap:
            log.warning(
                "heartbeat gap: expired leases are left to their owners for a while",
                extra={"action": "lease_contact_gap", "seconds": round(finished - last, 1)},
            )
            self._contact_since = finished

    async def run(self, stop: asyncio.Event) -> None:
        """Renew every `renew_every` seconds (sooner after a failure) until `stop` is set."""
        while not stop.is_set():
            ok = await self.renew()
            await first_of(stop, timeout=self.renew_every if ok else min(1.0, self.renew_every))
