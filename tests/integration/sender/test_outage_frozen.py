"""Postgres frozen (up, but answering nothing: a stopped VM, a full disk, a lock pile-up) when a
sender is told to stop: the sender still exits, after its drain's bounds, instead of waiting
for ever on a query, the release of a cancelled one, or the pool's close."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mail_proxy.db.migrate import migrate
from mail_proxy.db.pool import connect, create_pool
from mail_proxy.encryption import SecretBox, decode_key, generate_key
from tests.integration.sender.conftest import World, eventually
from tests.integration.sender.processes import sender_processes
from tests.integration.sender.servers import SmtpSink, smtp_server
from tests.integration.sender.stoppable_postgres import StoppablePostgres, stoppable_pg

pytestmark = pytest.mark.slow
__all__ = ["stoppable_pg"]  # the fixture
GRACE = 2


@contextlib.contextmanager
def frozen(pg: StoppablePostgres) -> Iterator[None]:
    """Every process of the server stopped (SIGSTOP) for the block, continued after it."""
    postmaster = int((Path(pg.server.pgdata) / "postmaster.pid").read_text().split()[0])
    root = psutil.Process(postmaster)
    processes = [root, *root.children(recursive=True)]
    for process in processes:
        os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)


@pytest.mark.timeout(180)
async def test_a_sender_stops_while_postgres_is_frozen(
    stoppable_pg: StoppablePostgres, tmp_path: Path
) -> None:
    conn = await connect(stoppable_pg.dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    key = generate_key()
    pool = await create_pool(stoppable_pg.dsn, max_size=3)
    world = World(stoppable_pg.dsn, pool, SecretBox(decode_key(key)), key)
    sink = SmtpSink(delay_seconds=0.5)  # messages in flight when Postgres freezes
    try:
        async with smtp_server(sink) as port:
            await world.tenant("acme")
            await world.account("acme", "smtp1", port)
            await world.enqueue("acme", "smtp1", *({"id": f"m{i}"} for i in range(200)))
            settings = {
                "shutdown_grace_seconds": GRACE,
                "send_loop_interval_seconds": 0.2,
                "lease_seconds": 30,
            }
            async with sender_processes(
                1, dsn=stoppable_pg.dsn, key=key, log_dir=tmp_path, **settings
            ) as [sender]:

                async def sending() -> bool:
                    return len(sink.received) >= 5

                await eventually(sending, timeout=60)
                proc = sender.proc
                assert proc is not None
                with frozen(stoppable_pg):
                    proc.send_signal(signal.SIGTERM)
                    try:
                        # Its bound is GRACE + 12 s; before the fix it waited for ever.
                        async with asyncio.timeout(60):
                            code = await proc.wait()
                    finally:
                        if proc.returncode is None:
                            proc.kill()
                assert code == 0, sender.log()
                assert "drain_stuck" in sender.log()
    finally:
        pool.terminate()  # its connections were open when Postgres froze
