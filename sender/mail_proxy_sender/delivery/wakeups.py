# SPDX-License-Identifier: Apache-2.0
"""LISTEN for work: NOTIFY on `mail_proxy_work`, `mail_proxy_run_now` and `mail_proxy_webhooks`
wakes this process; other channels (`listeners`, e.g. the shared domain back-off) are handed
their payloads.

A dedicated connection (not from the pool) listens; when it breaks, it is reopened with a
growing pause, and both events are set so nothing waits on a notification that was lost
meanwhile. Polling in the loops stays as the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from mail_proxy.db.notify import (
    RELOAD_INBOUND_CHANNEL,
    RUN_NOW_CHANNEL,
    WEBHOOKS_CHANNEL,
    WORK_CHANNEL,
)
from mail_proxy.db.pool import DATABASE_ERRORS, connect
from mail_proxy_sender.delivery.waiting import first_of

log = logging.getLogger(__name__)


class Wakeups:
    def __init__(self, dsn: str, listeners: Mapping[str, Callable[[str], None]] = {}) -> None:
        """`listeners`: more channels to LISTEN on, each with what to call with a payload."""
        self._dsn = dsn
        self._listeners = dict(listeners)
        self.work = asyncio.Event()
        self.reports = asyncio.Event()
        self.webhooks = asyncio.Event()
        self.inbound = asyncio.Event()
        self.listening = asyncio.Event()

    def _on_work(self, *_: Any) -> None:
        self.work.set()

    def _on_webhooks(self, *_: Any) -> None:
        self.webhooks.set()

    def _on_run_now(self, *_: Any) -> None:
        self.work.set()
        self.reports.set()
        self.webhooks.set()

    def _on_reload_inbound(self, *_: Any) -> None:
        self.inbound.set()

    async def run(self, stop: asyncio.Event) -> None:
        pause = 0.5
        while not stop.is_set():
            lost = asyncio.Event()
            try:
                conn = await connect(self._dsn)
            except DATABASE_ERRORS as exc:
                log.warning("cannot listen", extra={"action": "listen_error", "error": repr(exc)})
                await first_of(stop, timeout=pause)
                pause = min(pause * 2, 10.0)
                continue
            try:
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(WORK_CHANNEL, self._on_work)
                await conn.add_listener(RUN_NOW_CHANNEL, self._on_run_now)
                await conn.add_listener(WEBHOOKS_CHANNEL, self._on_webhooks)
                await conn.add_listener(RELOAD_INBOUND_CHANNEL, self._on_reload_inbound)
                for channel, call in self._listeners.items():
                    await conn.add_listener(channel, _payload_to(call))
                self.listening.set()
                pause = 0.5
                self._on_run_now()  # anything that arrived while we were not listening
                self._on_reload_inbound()
                await first_of(stop, lost)
            except DATABASE_ERRORS as exc:
                log.warning("listen lost", extra={"action": "listen_error", "error": repr(exc)})
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), timeout=5)


def _payload_to(call: Callable[[str], None]) -> Callable[..., None]:
    """An asyncpg listener (connection, pid, channel, payload) that hands `call` the payload."""

    def listener(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        call(payload)

    return listener
