# SPDX-License-Identifier: Apache-2.0
"""The lease rescuer: expired leases are taken back and counted as attempts (core `db.rescue`).

Run by the leasing loop every few seconds; any sender may rescue any other's expired rows.
"""

from __future__ import annotations

import logging
import time

import asyncpg

from mail_proxy.config import Settings
from mail_proxy.db.rescue import rescue_expired

log = logging.getLogger(__name__)


async def rescue_once(pool: asyncpg.Pool, settings: Settings) -> dict[str, int]:
    """One pass; returns how many messages went to each state (`pending`, `deferred`, `error`)."""
    async with pool.acquire() as conn:
        counts = await rescue_expired(
            conn,
            now=time.time(),
            max_retries=settings.max_retries,
        )
    if counts:
        log.warning(
            "took back expired leases",
            extra={"action": "rescued", **{f"to_{state}": n for state, n in counts.items()}},
        )
    return counts
