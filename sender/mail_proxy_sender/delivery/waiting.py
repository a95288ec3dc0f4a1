# SPDX-License-Identifier: Apache-2.0
"""Waiting on several asyncio events at once, with an optional timeout."""

from __future__ import annotations

import asyncio


async def first_of(*events: asyncio.Event, timeout: float | None = None) -> bool:  # noqa: ASYNC109
    """Wait until one of `events` is set or `timeout` passes; True when an event was set."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)
