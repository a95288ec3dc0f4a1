# SPDX-License-Identifier: BUSL-1.1
"""The sender's snapshot of where DSNs go (correlation secret, return paths), kept fresh.

Read at start (a sender never builds a message without its token) and again by the inbound
supervisor's every cycle, so a changed `bounce_return_path` or tenant bounce mailbox applies
without a restart.
"""

from __future__ import annotations

import asyncpg

from mail_proxy.db.bounce_routing import BounceRouting, load_bounce_routing


class RoutingCache:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.current: BounceRouting | None = None

    async def refresh(self) -> BounceRouting:
        async with self._pool.acquire() as conn:
            self.current = await load_bounce_routing(conn)
        return self.current
