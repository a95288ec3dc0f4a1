# SPDX-License-Identifier: Apache-2.0
"""Share the per-domain back-off between sender processes through Postgres (issue 10 item 6).

What one sender learns about a destination domain (its servers throttle; it accepts again) is
sent with `NOTIFY mail_proxy_domain_backoff` (`publish`, called by `DomainBackoff`), and every
sender's `Wakeups` connection hands what it hears to `received`, which applies it to that
sender's `DomainBackoff`: so every sender honours a domain's throttle, not only the one that was
told. A change is a hint, not a record: one that cannot be sent (queue full, database down) is
dropped and logged, and the senders that miss it learn the throttle from their own first answer.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from mail_proxy.db.notify import DOMAIN_BACKOFF_CHANNEL, notify
from mail_proxy.db.pool import DATABASE_ERRORS
from mail_proxy_sender.delivery.domain_backoff import DomainBackoff
from mail_proxy_sender.delivery.waiting import first_of

log = logging.getLogger(__name__)
_MAX_PENDING = 1000  # changes waiting to be sent; past it, new ones are dropped


class DomainBackoffChannel:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._pending: asyncio.Queue[str] = asyncio.Queue(_MAX_PENDING)
        self._backoff: DomainBackoff | None = None

    def attach(self, backoff: DomainBackoff) -> None:
        """The back-off that `received` changes are applied to."""
        self._backoff = backoff

    def publish(self, payload: str) -> None:
        """Queue one change for the other senders (non-blocking)."""
        try:
            self._pending.put_nowait(payload)
        except asyncio.QueueFull:
            log.warning("domain back-off change dropped", extra={"action": "domain_share_drop"})

    def received(self, payload: str) -> None:
        """A change some sender (this one included: applying it again changes nothing)
        published."""
        if self._backoff is not None and not self._backoff.apply(payload, time.time()):
            log.warning(
                "ignored a malformed domain back-off notification",
                extra={"action": "domain_share_invalid", "payload": payload[:200]},
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Send the queued changes until `stop`."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while True:
                getter = asyncio.ensure_future(self._pending.get())
                done, _ = await asyncio.wait(
                    {getter, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                    return
                batch = [getter.result()]
                while not self._pending.empty():
                    batch.append(self._pending.get_nowait())
                await self._send(batch, stop)
        finally:
            stopping.cancel()

    async def _send(self, batch: list[str], stop: asyncio.Event) -> None:
        try:
            async with self._pool.acquire() as conn:
                for payload in batch:
                    await notify(conn, DOMAIN_BACKOFF_CHANNEL, payload)
        except DATABASE_ERRORS as exc:
            log.warning(
                "domain back-off changes not shared",
                extra={"action": "domain_share_error", "error": repr(exc), "lost": len(batch)},
            )
            await first_of(stop, timeout=1.0)
