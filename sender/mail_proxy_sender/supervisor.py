# SPDX-License-Identifier: Apache-2.0
"""Keeping a sender's background loops alive: a crash is logged, counted and restarted.

Every loop already contains the failures of one item (a tenant, a message, a mailbox) and goes
on; what reaches here is a bug. Ending the process for it would let one tenant's data stop
every tenant's mail, again after each restart (issue 9). So the loop is started again after a
back-off that doubles from `base_seconds` up to `max_seconds` (reset once it has run for
`max_seconds` without crashing), each crash logged with its traceback and counted in
`gmp_task_restarts_total{task}`. A loop that *returns* while the sender is not stopping is
restarted the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from mail_proxy.metrics import Metrics
from mail_proxy_sender.delivery.waiting import first_of

log = logging.getLogger(__name__)


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    stop: asyncio.Event,
    metrics: Metrics,
    base_seconds: float = 1.0,
    max_seconds: float = 60.0,
) -> None:
    """Run `run()` until `stop` is set, restarting it after a crash (see the module doc)."""
    failures = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            await run()
        except Exception:
            log.exception(
                "background task crashed; restarting",
                extra={"action": "task_crash", "task": name, "failures": failures + 1},
            )
        else:
            if stop.is_set():
                return
            log.error(
                "background task ended early; restarting",
                extra={"action": "task_crash", "task": name, "failures": failures + 1},
            )
        if time.monotonic() - started >= max_seconds:
            failures = 0
        metrics.task_restarts.labels(name).inc()
        delay = min(max_seconds, base_seconds * 2**failures)
        failures = min(failures + 1, 30)
        await first_of(stop, timeout=delay)
