"""Backlog benchmark: does a sender's cost stay flat as the queue grows? Prints figures only.

    python bench/backlog.py                       # 1,000,000 messages
    python bench/backlog.py --messages 100000     # a smaller backlog on a busy machine

Everything runs here: an embedded Postgres (or GMP_DATABASE_URL), an instant SMTP sink and a
full sender (leasing, lanes, outcome writer) in this process. Messages are enqueued with the
API's own intake statement (`db.messages.enqueue`, 1000 per statement). Printed:
- enqueue rate (msgs/s) over the whole backlog;
- at 10k and at N queued: lease latency p50/p99 (one `ready_accounts` + one `lease_for_account`
  transaction of a 50-message batch, rolled back so the backlog stays as it is) and the delivery
  rate of the sender for `--deliver-seconds`;
- bytes per stored message (table + indexes + TOAST of `messages`);
- retention: how long purging N reported messages takes (batched deletes) while the sender keeps
  delivering a fresh queue, and the delivery rate during the purge against the rate before it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
from aiosmtpd.smtp import SMTP, Envelope, Session

from mail_proxy.config import Settings
from mail_proxy.db import accounts as db_accounts
from mail_proxy.db import tenants as db_tenants
from mail_proxy.db.leases import lease_for_account, ready_accounts
from mail_proxy.db.messages import EnqueueItem, enqueue
from mail_proxy.db.migrate import migrate
from mail_proxy.db.pool import connect, create_pool
from mail_proxy.db.retention import purge
from mail_proxy.encryption import SecretBox, decode_key, generate_key
from mail_proxy.metrics import Metrics
from mail_proxy_sender.service import SenderContext, run_sender

CHUNK = 1000


class Sink:
    def __init__(self) -> None:
        self.accepted = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.accepted += 1
        return "250 OK"


@contextlib.asynccontextmanager
async def sink_server(sink: Sink) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    sessions: list[SMTP] = []

    def protocol() -> SMTP:
        smtp = SMTP(sink, hostname="sink.bench", loop=loop)
        sessions.append(smtp)
        return smtp

    server = await loop.create_server(protocol, "127.0.0.1", 0, backlog=1024)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for smtp in sessions:
            if smtp.transport is not None:
                smtp.transport.close()


@contextlib.contextmanager
def database(data_dir: Path) -> Iterator[str]:
    if url := os.environ.get("GMP_DATABASE_URL"):
        yield url
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(data_dir / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _items(start: int, count: int, prefix: str = "b") -> list[EnqueueItem]:
    items = []
    for i in range(start, start + count):
        message_id = f"{prefix}{i:08d}"
        payload = {
            "id": message_id,
            "tenant_id": "bench",
            "account_id": "sink",
            "from": "bench@example.org",
            "to": ["sink@example.org"],
            "subject": f"backlog {message_id}",
            "body": "A benchmark message.\n" * 10,
        }
        items.append(EnqueueItem(message_id, "bench", "sink", 2, payload, None, None, None))
    return items


async def enqueue_range(pool: asyncpg.Pool, start: int, stop: int, prefix: str = "b") -> None:
    async with pool.acquire() as conn:
        for chunk in range(start, stop, CHUNK):
            await enqueue(
                conn,
                items=_items(chunk, min(CHUNK, stop - chunk), prefix),
                now_ts=int(time.time()),
                log_tenant_id=None,
                log_payload=None,
            )


def _pct(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def lease_latency(pool: asyncpg.Pool, rounds: int) -> tuple[float, float]:
    """p50/p99 seconds of find-ready + lease-a-batch, each rolled back."""
    times = []
    async with pool.acquire() as conn:
        for _ in range(rounds):
            started = time.perf_counter()
            tr = conn.transaction()
            await tr.start()
            try:
                ready = await ready_accounts(conn, now=time.time())
                lease = await lease_for_account(
                    conn,
                    account_pk=ready[0].account_pk,
                    owner="bench",
                    default_batch=50,
                    lease_seconds=30,
                    now=time.time(),
                )
                assert len(lease.messages) == 50
            finally:
                await tr.rollback()
            times.append(time.perf_counter() - started)
    return _pct(times, 50), _pct(times, 99)


class RunningSender:
    """A full sender in this process, started and stopped around a measurement."""

    def __init__(self, dsn: str, box: SecretBox, settings: Settings) -> None:
        self._dsn, self._box, self._settings = dsn, box, settings
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pool: asyncpg.Pool | None = None

    async def __aenter__(self) -> RunningSender:
        self._pool = await create_pool(self._dsn, max_size=8)
        ctx = SenderContext(
            settings=self._settings,
            pool=self._pool,
            box=self._box,
            metrics=Metrics(),
            dsn=self._dsn,
        )
        self._task = asyncio.create_task(run_sender(ctx, self._stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        assert self._pool is not None
        await self._task
        await self._pool.close()


async def delivery_rate(sink: Sink, seconds: float) -> float:
    """Messages the sink accepted per second over the next `seconds` (sender already warm)."""
    before, started = sink.accepted, time.perf_counter()
    await asyncio.sleep(seconds)
    return (sink.accepted - before) / (time.perf_counter() - started)


async def snapshot(
    label: str, pool: asyncpg.Pool, sink: Sink, dsn: str, box: SecretBox, args: Any
) -> None:
    async with pool.acquire() as conn:
        # Planner statistics as autovacuum keeps them on a live queue (a bulk load outruns it).
        await conn.execute("ANALYZE messages")
    p50, p99 = await lease_latency(pool, args.lease_rounds)
    settings = Settings(
        send_loop_interval_seconds=0.2,
        retention_interval_seconds=3600,
        report_retention_seconds=0,  # the benchmark runs the purge itself, timed
        outbound_allow=("127.0.0.1/32",),  # the SMTP sink is on loopback
    )
    async with RunningSender(dsn, box, settings):
        await asyncio.sleep(2.0)  # connections open, lanes full
        rate = await delivery_rate(sink, args.deliver_seconds)
    async with pool.acquire() as conn:
        queued = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE state IN ('pending', 'deferred')"
        )
    print(
        f"[{label}] {queued} queued: lease latency p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms; delivery {rate:.0f} msgs/s",
        flush=True,
    )


async def main_async(args: argparse.Namespace) -> None:
    key = generate_key()
    box = SecretBox(decode_key(key))
    with tempfile.TemporaryDirectory(prefix="mp-backlog-") as tmp, database(Path(tmp)) as dsn:
        conn = await connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        pool = await create_pool(dsn, max_size=4)
        sink = Sink()
        try:
            async with sink_server(sink) as port:
                async with pool.acquire() as conn:
                    await db_tenants.upsert_tenant(
                        conn, tenant_id="bench", fields={}, api_key_hash=None
                    )
                    await db_accounts.upsert_account(
                        conn,
                        tenant_id="bench",
                        account_id="sink",
                        fields={"host": "127.0.0.1", "port": port, "use_tls": False},
                    )
                await run_phases(args, pool, sink, dsn, box)
        finally:
            await pool.close()


async def run_phases(
    args: argparse.Namespace, pool: asyncpg.Pool, sink: Sink, dsn: str, box: SecretBox
) -> None:
    n = args.messages
    first = min(10_000, n)
    started = time.perf_counter()
    await enqueue_range(pool, 0, first)
    spent = time.perf_counter() - started
    await snapshot("10k", pool, sink, dsn, box, args)
    # Refill what the 10k delivery took, then the rest of the backlog.
    async with pool.acquire() as conn:
        queued = await conn.fetchval("SELECT count(*) FROM messages WHERE state = 'pending'")
    started = time.perf_counter()
    await enqueue_range(pool, first, n + (first - queued))
    spent += time.perf_counter() - started
    enqueued = n + (first - queued)
    print(f"enqueue: {enqueued} messages at {enqueued / spent:.0f} msgs/s", flush=True)
    await snapshot(f"{n // 1000}k", pool, sink, dsn, box, args)
    async with pool.acquire() as conn:
        size = await conn.fetchval("SELECT pg_total_relation_size('messages')")
        rows = await conn.fetchval("SELECT count(*) FROM messages")
        print(f"storage: {size / rows:.0f} bytes per stored message ({rows} rows)", flush=True)
        # Every stored message becomes a reported, final message past retention; a fresh
        # queue (`f` ids) keeps the sender busy while retention purges them.
        old = int(time.time()) - 10 * 86_400
        started = time.perf_counter()
        await conn.execute(
            "UPDATE messages SET state = 'sent', smtp_ts = $1, lease_owner = NULL, "
            "lease_until = NULL WHERE state <> 'sent' OR smtp_ts IS NULL OR smtp_ts > $1",
            old,
        )
        await conn.execute("UPDATE message_events SET reported_ts = $1", old)
        await conn.execute("VACUUM ANALYZE messages")
        purgeable = await conn.fetchval("SELECT count(*) FROM messages")
        print(
            f"retention setup: {purgeable} messages made final and reported in "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
    await enqueue_range(pool, 0, args.fresh, prefix="f")
    settings = Settings(
        send_loop_interval_seconds=0.2,
        retention_interval_seconds=3600,
        report_retention_seconds=0,  # the benchmark runs the purge itself, timed
        outbound_allow=("127.0.0.1/32",),  # the SMTP sink is on loopback
    )
    async with RunningSender(dsn, box, settings):
        await asyncio.sleep(2.0)
        before = await delivery_rate(sink, args.deliver_seconds)
        accepted, clock = sink.accepted, time.perf_counter()
        purged = None
        async with pool.acquire() as conn:
            while purged is None:  # None: the sender's own retention pass holds the lock
                purged = await purge(
                    conn,
                    now=time.time(),
                    report_retention_seconds=86_400,
                    command_log_retention_seconds=None,
                )
        took = time.perf_counter() - clock
        during = (sink.accepted - accepted) / took
    count = purged.messages if purged is not None else 0
    print(
        f"retention: purged {count} messages in {took:.1f} s ({count / took:.0f}/s, batches "
        f"of 5000) while sending; delivery {during:.0f} msgs/s during the purge vs "
        f"{before:.0f} msgs/s before ({during / max(before, 1e-9):.2f} x)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", "-n", type=int, default=1_000_000)
    parser.add_argument("--fresh", type=int, default=50_000, help="queue sent during the purge")
    parser.add_argument("--deliver-seconds", type=float, default=10.0)
    parser.add_argument("--lease-rounds", type=int, default=200)
    t0 = time.perf_counter()
    args = parser.parse_args()
    asyncio.run(main_async(args))
    print(f"total {time.perf_counter() - t0:.0f} s, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
