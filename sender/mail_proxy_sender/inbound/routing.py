# SPDX-License-Identifier: BUSL-1.1
"""The sender's snapshot of where DSNs go (correlation secret, return paths), kept fresh.

Read at start (a sender never builds a message without its token) and again every
`refresh_seconds`, so a changed `bounce_return_path` or tenant bounce mailbox applies without
a restart.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from mail_proxy.db.bounce_routing import BounceRouting, load_bounce_routing
from mail_proxy_sender.delivery.waiting import first_of

log = logging.getLogger(__name__)


class RoutingCache:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.current: BounceRouting | None = None

    async def refresh(self) -> BounceRouting:
        async with self._pool.acquire() as conn:
            self.current = await load_bounce_routing(conn)
        return self.current

    async def run(self, stop: asyncio.Event, refresh_seconds: float) -> None:
        while not stop.is_set():
            await first_of(stop, timeout=refresh_seconds)
            if stop.is_set():
                return
            try:
                await self.refresh()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("bounce routing not refreshed", extra={"error": repr(exc)})
