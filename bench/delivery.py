"""Delivery benchmark: N messages through the REST API, K `mail-proxy sender` processes, a local
SMTP sink. Prints figures; asserts nothing.

    python bench/delivery.py                       # 5,000 messages, 1 sender, instant sink
    python bench/delivery.py -k 2                  # two sender processes on the same cores
    python bench/delivery.py --sink-delay 0.2      # the sink takes 200 ms per message
    python bench/delivery.py --runs 3              # median of three runs
    python bench/delivery.py --sink-delay 0.2 --max-connections 100 --messages 10000
    python bench/delivery.py --no-pipelining       # a sink that does not offer PIPELINING

Everything runs on this machine: an embedded Postgres (or GMP_DATABASE_URL), one `mail-proxy api`
process, K sender processes and the sink (aiosmtpd, in this process). Reported: delivered
messages per second (first enqueue to last SMTP acceptance), p50/p99 of enqueue -> accepted,
duplicates, the duplicate window (SMTP acceptance -> `sent` stored, p50/p99), and the peak RSS of
each sender process, the CPU the senders and the API used per delivered message, and the load
average. Before ours, the same sink is driven by plain aiosmtplib (in this process; 16
connections, or with `--sink-delay` the account's `--max-connections`) with MIME built per
message and with pre-built bytes: the limits, measured in the same run, and ours as a ratio of
the pre-built one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg
import httpx
import psutil
from aiosmtpd.smtp import SMTP, Envelope, Session

from mail_proxy.db.migrate import migrate
from mail_proxy.db.pool import connect
from mail_proxy.encryption import generate_key
from mail_proxy.mime import build_message

ENTRY = "from mail_proxy_cli.main import main; main()"
ADMIN_TOKEN = "bench-admin-token"
BATCH = 1000
_MAIL_ID = re.compile(rb"^X-Genro-Mail-ID: ([^\r\n]*)\r\n", re.MULTILINE | re.IGNORECASE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Sink:
    delay_seconds: float
    # Offer PIPELINING (RFC 2920), as the relays a sender meets do (Postfix, Exim, Gmail);
    # plain aiosmtplib never pipelines, ours does when offered.
    pipelining: bool = True
    accepted: list[tuple[str, float]] = field(default_factory=list)
    distinct: set[str] = field(default_factory=set)  # counted as they come: polled often

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        data = bytes(envelope.original_content or b"")
        # A header search, not a parse: the sink stands for a relay on another machine, so it
        # should cost this one as little as it can.
        found = _MAIL_ID.search(data, 0, data.find(b"\r\n\r\n") + 2)
        message_id = found.group(1).decode() if found else ""
        self.accepted.append((message_id, time.time()))
        self.distinct.add(message_id)
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


async def fresh_database(server_dsn: str, name: str) -> str:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    before, _, after = server_dsn.partition("/postgres?")
    dsn = f"{before}/{name}?{after}" if after else server_dsn.rsplit("/", 1)[0] + f"/{name}"
    conn = await connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return dsn


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: asyncio.subprocess.Process | None = None
        self.peak_rss = 0

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", ENTRY, *self.args, env=self.env, stdout=out, stderr=out
            )

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        if self.proc is None or self.proc.returncode is not None:
            return 0.0
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(self.proc.pid).cpu_times()
            return float(times.user + times.system)
        return 0.0

    def sample(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(psutil.Error):
                rss = psutil.Process(self.proc.pid).memory_info().rss
                self.peak_rss = max(self.peak_rss, rss)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 60)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def wait_http(url: str, proc: Proc, within_seconds: float = 60) -> None:
    deadline = time.monotonic() + within_seconds
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            assert proc.proc is not None
            if proc.proc.returncode is not None:
                raise SystemExit(f"process exited; see {proc.log}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url, timeout=2)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} not ready; see {proc.log}")


def _payload(message_id: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "tenant_id": "bench",
        "account_id": "sink",
        "from": "bench@example.org",
        "to": "sink@example.org",
        "subject": f"bench {message_id}",
        "body": "A benchmark message.\n" * 10,
    }


async def plain_limit(
    count: int, *, prebuilt: bool, connections: int = 16, delay_seconds: float = 0.0
) -> float:
    """msgs/s of plain aiosmtplib against a fresh sink (its own in this process)."""
    sink = Sink(delay_seconds)
    payloads = [_payload(f"p{i:06d}") for i in range(count)]
    built = (
        [build_message(p, [], tenant_id="bench", message_pk=i) for i, p in enumerate(payloads)]
        if prebuilt
        else []
    )
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    async with sink_server(sink) as port:

        async def worker() -> None:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
            await client.connect()
            try:
                while not queue.empty():
                    i = queue.get_nowait()
                    wire = (
                        built[i]
                        if prebuilt
                        else build_message(payloads[i], [], tenant_id="bench", message_pk=i)
                    )
                    await client.sendmail(wire.envelope_from, wire.recipients, wire.data)
            finally:
                await client.quit()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return count / elapsed


async def one_run(
    args: argparse.Namespace, server_dsn: str, run: int, logs: Path
) -> dict[str, Any]:
    dsn = await fresh_database(server_dsn, f"bench_delivery_{run}")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("GMP_", "MAIL_PROXY_"))}
    base_env.update(
        GMP_DATABASE_URL=dsn,
        MAIL_PROXY_ENCRYPTION_KEY=generate_key(),
        GMP_API_TOKEN=ADMIN_TOKEN,
        GMP_HOST="127.0.0.1",
        GMP_LOG_LEVEL="WARNING",
        GMP_OUTBOUND_ALLOW="127.0.0.1/32",  # the SMTP sink is on loopback
    )
    api_port = free_port()
    api = Proc(["api"], {**base_env, "GMP_PORT": str(api_port)}, logs / f"api-{run}.log")
    senders = [
        Proc(
            ["sender"],
            {
                **base_env,
                "GMP_SENDER_METRICS_PORT": str(free_port()),
                "GMP_BATCH_SIZE_PER_ACCOUNT": str(args.batch),
                **(
                    {"GMP_SMTP_CONNECTIONS_PER_ACCOUNT": str(args.connections)}
                    if args.connections
                    else {}
                ),
            },
            logs / f"sender{i}-{run}.log",
        )
        for i in range(args.senders)
    ]
    sink = Sink(args.sink_delay, pipelining=not args.no_pipelining)
    headers = {"X-API-Token": ADMIN_TOKEN}
    enqueued_at: dict[str, float] = {}
    async with sink_server(sink) as smtp_port:
        await api.start()
        for proc in senders:
            await proc.start()
        try:
            await wait_http(f"http://127.0.0.1:{api_port}/ready", api)
            for proc in senders:
                port = proc.env["GMP_SENDER_METRICS_PORT"]
                await wait_http(f"http://127.0.0.1:{port}/ready", proc)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{api_port}", headers=headers, timeout=60
            ) as client:
                r = await client.post("/tenant", json={"id": "bench"})
                r.raise_for_status()
                r = await client.post(
                    "/account",
                    json={
                        "id": "sink",
                        "tenant_id": "bench",
                        "host": "127.0.0.1",
                        "port": smtp_port,
                        "use_tls": False,
                        "max_connections": args.max_connections,
                    },
                )
                r.raise_for_status()
                started = time.time()
                cpu_before = [p.cpu_seconds() for p in (*senders, api)]
                sampler = asyncio.create_task(_sample(senders))
                for start in range(0, args.messages, BATCH):
                    ids = [f"b{i:06d}" for i in range(start, min(start + BATCH, args.messages))]
                    body = {"messages": [_payload(i) for i in ids]}
                    r = await client.post("/commands/add-messages", json=body)
                    r.raise_for_status()
                    now = time.time()
                    enqueued_at.update(dict.fromkeys(ids, now))
                deadline = time.monotonic() + args.timeout
                while len(sink.distinct) < args.messages:
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
                finished = max((t for _, t in sink.accepted), default=time.time())
                cpu_used = [
                    after - before
                    for before, after in zip(
                        cpu_before, [p.cpu_seconds() for p in (*senders, api)], strict=True
                    )
                ]
                await asyncio.sleep(1.0)  # late duplicates, if any, arrive now
                sampler.cancel()
                conn = await asyncpg.connect(dsn)
                try:
                    stored = {
                        r["id"]: r["at"]
                        for r in await conn.fetch(
                            "SELECT id, extract(epoch FROM updated_at)::float8 AS at "
                            "FROM messages WHERE state = 'sent'"
                        )
                    }
                finally:
                    await conn.close()
        finally:
            for proc in senders:
                proc.sample()
                await proc.stop()
            await api.stop()
    first: dict[str, float] = {}
    for message_id, at in sink.accepted:
        first.setdefault(message_id, at)
    latencies = sorted(first[m] - enqueued_at[m] for m in first if m in enqueued_at)
    counts = Counter(m for m, _ in sink.accepted)
    # The duplicate window: from the server's 250 to the transaction that stored `sent`
    # (updated_at is that transaction's start, so this slightly understates it).
    window = sorted(max(0.0, stored[m] - first[m]) for m in first if m in stored)
    return {
        "window_p50": _pct(window, 50),
        "window_p99": _pct(window, 99),
        "delivered": len(first),
        "rate": len(first) / max(1e-9, finished - started),
        "p50": _pct(latencies, 50),
        "p99": _pct(latencies, 99),
        "duplicates": sum(n - 1 for n in counts.values()),
        "rss_mb": [round(p.peak_rss / 2**20) for p in senders],
        # CPU per delivered message (ms): every sender together, and the API (enqueue). A
        # figure that a busy machine changes little, unlike the rates.
        "sender_cpu_ms": sum(cpu_used[:-1]) * 1000 / max(1, len(first)),
        "api_cpu_ms": cpu_used[-1] * 1000 / max(1, len(first)),
    }


async def _sample(procs: list[Proc]) -> None:
    while True:
        for proc in procs:
            proc.sample()
        await asyncio.sleep(0.2)


def _pct(values: list[float], pct: int) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * pct / 100))]


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="mp-bench-") as tmp:
        logs = Path(tmp)
        with database(logs) as server_dsn:
            results = []
            # The limits face the same sink: instant, 16 connections; with a sink delay, the
            # account's max_connections (the latency bound: connections / delay at best).
            limits: dict[str, Any] = (
                {"connections": args.max_connections, "delay_seconds": args.sink_delay}
                if args.sink_delay
                else {"connections": 16}
            )
            for run in range(args.runs):
                per_message = prebuilt = float("nan")
                if not args.skip_limits:
                    per_message = await plain_limit(args.messages, prebuilt=False, **limits)
                    prebuilt = await plain_limit(args.messages, prebuilt=True, **limits)
                result = await one_run(args, server_dsn, run, logs)
                result["ratio"] = result["rate"] / prebuilt
                results.append(result)
                print(
                    f"run {run + 1}: plain aiosmtplib ({limits['connections']} conns) "
                    "MIME per message "
                    f"{per_message:.0f} msgs/s, pre-built bytes {prebuilt:.0f} msgs/s; ours "
                    f"{result['delivered']}/{args.messages} delivered, "
                    f"{result['rate']:.0f} msgs/s = {result['ratio']:.2f} x pre-built, "
                    f"p50 {result['p50'] * 1000:.0f} ms, "
                    f"p99 {result['p99'] * 1000:.0f} ms, duplicates {result['duplicates']}, "
                    f"dup window p50 {result['window_p50'] * 1000:.0f} ms "
                    f"p99 {result['window_p99'] * 1000:.0f} ms, "
                    f"sender RSS {result['rss_mb']} MB, CPU per message: senders "
                    f"{result['sender_cpu_ms']:.2f} ms, API {result['api_cpu_ms']:.2f} ms; "
                    f"load {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
                )
    print(
        f"median of {args.runs}: {statistics.median(r['rate'] for r in results):.0f} msgs/s "
        f"({statistics.median(r['ratio'] for r in results):.2f} x pre-built), "
        f"p50 {statistics.median(r['p50'] for r in results) * 1000:.0f} ms, "
        f"p99 {statistics.median(r['p99'] for r in results) * 1000:.0f} ms, "
        f"peak sender RSS {max(max(r['rss_mb']) for r in results)} MB, "
        f"sender CPU {statistics.median(r['sender_cpu_ms'] for r in results):.2f} ms/message "
        f"(N={args.messages}, K={args.senders}, sink delay {args.sink_delay * 1000:.0f} ms, "
        f"max_connections {args.max_connections}, per-process ceiling "
        f"{args.connections or 'none'}, sink PIPELINING "
        f"{'off' if args.no_pipelining else 'offered'}, {os.cpu_count()} CPUs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", "-n", type=int, default=5000)
    # One sender process by default: the limits are one process (client and sink) on one core,
    # and here every process shares the same two cores with the sink, Postgres and the API. A
    # second sender (-k 2) is a pod for another machine; on these cores the senders use 25-40 %
    # more CPU per message (measured; profiles show the same shares per part, so it is more busy
    # processes sharing two cores, not the senders' coordination).
    parser.add_argument("--senders", "-k", type=int, default=1)
    parser.add_argument("--sink-delay", type=float, default=0.0, help="seconds per message")
    parser.add_argument(
        "--connections", type=int, default=0, help="per-process ceiling (0: none, as shipped)"
    )
    parser.add_argument("--max-connections", type=int, default=20, help="the account's cap")
    parser.add_argument("--skip-limits", action="store_true", help="only ours")
    parser.add_argument(
        "--batch", type=int, default=50, help="lease batch per account (as shipped)"
    )
    parser.add_argument(
        "--no-pipelining", action="store_true", help="the sink does not offer PIPELINING"
    )
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
