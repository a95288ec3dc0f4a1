# SPDX-License-Identifier: Apache-2.0
"""Applies retention every `retention_interval_seconds` (one pod at a time; see core)."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from mail_proxy.config import Settings
from mail_proxy.db.pool import DATABASE_ERRORS
from mail_proxy.db.retention import purge
from mail_proxy_sender.delivery.waiting import first_of

log = logging.getLogger(__name__)


async def run_retention(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            async with pool.acquire() as conn:
                purged = await purge(
                    conn,
                    now=time.time(),
                    report_retention_seconds=settings.report_retention_seconds,
                    command_log_retention_seconds=settings.command_log_retention_seconds,
                    idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
                )
        except DATABASE_ERRORS as exc:
            log.warning("retention failed", extra={"action": "retention_error", "error": repr(exc)})
        else:
            if purged is not None and (
                purged.messages
                or purged.command_log
                or purged.idempotency_keys
                or purged.webhook_deliveries
            ):
                log.info(
                    "retention applied",
                    extra={
                        "action": "retention",
                        "messages": purged.messages,
                        "send_log": purged.send_log,
                        "command_log": purged.command_log,
                        "idempotency_keys": purged.idempotency_keys,
                        "webhook_deliveries": purged.webhook_deliveries,
                    },
                )
        await first_of(stop, timeout=settings.retention_interval_seconds)
