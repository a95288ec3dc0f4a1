"""A background task that crashes is logged, counted and restarted with back-off; stopping
ends it (issue 9 item 1)."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from mail_proxy.metrics import Metrics
from mail_proxy_sender.supervisor import supervise


def _restarts(metrics: Metrics, task: str) -> float:
    value = metrics.registry.get_sample_value("gmp_task_restarts_total", {"task": task})
    return value or 0.0


async def test_a_crashing_task_is_restarted_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    stop = asyncio.Event()
    runs: list[float] = []

    async def flaky() -> None:
        runs.append(asyncio.get_running_loop().time())
        if len(runs) <= 3:
            raise ValueError(f"poison item {len(runs)}")
        await stop.wait()

    task = asyncio.create_task(
        supervise("reporter", flaky, stop=stop, metrics=metrics, base_seconds=0.05)
    )
    for _ in range(200):
        if len(runs) >= 4:
            break
        await asyncio.sleep(0.01)
    assert len(runs) == 4
    assert _restarts(metrics, "reporter") == 3
    # back-off doubles: 0.05, 0.1, 0.2 s between the runs
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert gaps[0] >= 0.04
    assert gaps[2] >= 0.18
    crashes = [r for r in caplog.records if getattr(r, "action", None) == "task_crash"]
    assert len(crashes) == 3
    assert all(r.exc_info and r.levelno == logging.ERROR for r in crashes)
    stop.set()
    await asyncio.wait_for(task, 1)
    assert _restarts(metrics, "reporter") == 3


async def test_a_task_ending_early_is_restarted_and_stop_ends_the_supervisor() -> None:
    metrics = Metrics()
    stop = asyncio.Event()
    runs = 0

    async def returns_at_once() -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            stop.set()

    await asyncio.wait_for(
        supervise("retention", returns_at_once, stop=stop, metrics=metrics, base_seconds=0.01),
        2,
    )
    assert runs == 2
    assert _restarts(metrics, "retention") == 1
