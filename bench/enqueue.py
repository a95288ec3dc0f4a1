"""Enqueue benchmark: how fast `POST /commands/add-messages` accepts mail. Prints figures only.

Starts `mail-proxy serve` (embedded Postgres, a temporary data dir, a free port), creates a
tenant and an account, suspends the tenant (so the sender in the same process stays idle and
only the API is measured), then measures

  (a) throughput: batches of 100 messages from 4 concurrent keep-alive clients for ~10 s;
  (b) latency: one message per request, sequentially, from a single client.

    python bench/enqueue.py [--runs 3] [--seconds 10] [--requests 2000]

Each run uses a fresh instance; the table shows every run and the median. Because figures on a
shared machine are noisy, it also prints the CPU time per message of the mail-proxy process, of
its Postgres and of the bench client during (a), and the load average just before each run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import psutil

TOKEN_LINE = "Generated admin token (shown once): "
BATCH = 100
CLIENTS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    url: str
    token: str
    data_dir: Path

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU used so far by (the mail-proxy process, its embedded Postgres)."""
        own = _cpu(psutil.Process(self.proc.pid), children=False)
        # pg_ctl daemonises the postmaster, so it is not a child of the server process.
        pid_file = self.data_dir / "pgdata" / "postmaster.pid"
        postgres = 0.0
        with contextlib.suppress(psutil.Error, FileNotFoundError):
            postgres = _cpu(psutil.Process(int(pid_file.read_text().split()[0])), children=True)
        return own, postgres


def _cpu(proc: psutil.Process, *, children: bool) -> float:
    total = 0.0
    for each in [proc, *(proc.children(recursive=True) if children else [])]:
        with contextlib.suppress(psutil.Error):
            times = each.cpu_times()
            total += times.user + times.system
    return total


@contextlib.asynccontextmanager
async def mail_proxy_serve(data_dir: Path) -> AsyncIterator[Server]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GMP_", "MAIL_PROXY_"))}
    env["GMP_LOG_LEVEL"] = "WARNING"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mail_proxy_cli.main",
        "serve",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    token = None
    try:
        while token is None:
            line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
            if not line:
                raise SystemExit("mail-proxy serve exited before printing its admin token")
            if line.startswith(TOKEN_LINE):
                token = line.removeprefix(TOKEN_LINE).strip()
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(600):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/health")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield Server(proc, url, token, data_dir)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)


def _message(msg_id: str) -> dict[str, object]:
    return {
        "id": msg_id,
        "tenant_id": "bench",
        "account_id": "smtp1",
        "from": "Newsletter <news@bench.example.org>",
        "to": [f"reader-{msg_id}@example.org"],  # unique, as in a real campaign
        "subject": "Your weekly digest",
        "body": "Hello,\n\nhere is what happened this week. " * 5,
        "priority": "medium",
    }


async def _prepare(client: httpx.AsyncClient) -> None:
    for method, path, body in [
        ("POST", "/tenant", {"id": "bench", "name": "Bench"}),
        ("POST", "/account", {"id": "smtp1", "tenant_id": "bench", "host": "127.0.0.1", "port": 9}),
        ("POST", "/commands/suspend?tenant_id=bench", None),
    ]:
        r = await client.request(method, path, json=body)
        r.raise_for_status()


async def _throughput(url: str, token: str, seconds: float, run: int) -> float:
    """Messages per second accepted by CLIENTS concurrent clients posting batches of BATCH."""
    deadline = time.perf_counter() + seconds
    counts = [0] * CLIENTS

    async def client_loop(n: int) -> None:
        async with httpx.AsyncClient(
            base_url=url, headers={"X-API-Token": token}, timeout=30
        ) as client:
            batch = 0
            while time.perf_counter() < deadline:
                prefix = f"r{run}-c{n}-b{batch}-"
                # orjson: the client shares the CPUs with the server, so it should cost little
                body = orjson.dumps({"messages": [_message(f"{prefix}{i}") for i in range(BATCH)]})
                r = await client.post(
                    "/commands/add-messages",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                if r.status_code != 200 or r.json()["queued"] != BATCH:
                    raise SystemExit(f"unexpected answer: {r.status_code} {r.text[:500]}")
                counts[n] += BATCH
                batch += 1

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(n) for n in range(CLIENTS)))
    return sum(counts) / (time.perf_counter() - started)


async def _latency(url: str, token: str, requests: int, run: int) -> list[float]:
    """Milliseconds per single-message request, one request at a time."""
    timings: list[float] = []
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Token": token}, timeout=30
    ) as client:
        for i in range(requests + 50):
            body = orjson.dumps({"messages": [_message(f"r{run}-single-{i}")]})
            started = time.perf_counter()
            r = await client.post(
                "/commands/add-messages", content=body, headers={"Content-Type": "application/json"}
            )
            elapsed = time.perf_counter() - started
            if r.status_code != 200:
                raise SystemExit(f"unexpected answer: {r.status_code} {r.text[:500]}")
            if i >= 50:  # the first requests warm caches and connections
                timings.append(elapsed * 1000)
    return timings


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class RunResult:
    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    api_cpu_us: float  # per message
    pg_cpu_us: float
    client_cpu_us: float
    load: float


async def one_run(run: int, seconds: float, requests: int) -> RunResult:
    load_before = os.getloadavg()[0]  # what else runs here; during a run the bench adds ~2
    with tempfile.TemporaryDirectory(prefix="mp-bench-") as tmp:
        async with mail_proxy_serve(Path(tmp)) as server:
            url = server.url
            async with httpx.AsyncClient(
                base_url=url, headers={"X-API-Token": server.token}
            ) as client:
                await _prepare(client)
            await _throughput(url, server.token, 1.0, -run - 1)  # warm-up
            api_before, pg_before = server.cpu_seconds()
            client_before = time.process_time()
            started = time.perf_counter()
            rate = await _throughput(url, server.token, seconds, run)
            messages = rate * (time.perf_counter() - started)
            api_after, pg_after = server.cpu_seconds()
            client_used = time.process_time() - client_before
            timings = await _latency(url, server.token, requests, run)
    return RunResult(
        msgs_per_s=rate,
        p50_ms=_percentile(timings, 0.50),
        p99_ms=_percentile(timings, 0.99),
        api_cpu_us=(api_after - api_before) * 1e6 / messages,
        pg_cpu_us=(pg_after - pg_before) * 1e6 / messages,
        client_cpu_us=client_used * 1e6 / messages,
        load=load_before,
    )


COLUMNS = [
    ("(a) msgs/s", "msgs_per_s", "{:,.0f}"),
    ("(b) p50 ms", "p50_ms", "{:.2f}"),
    ("(b) p99 ms", "p99_ms", "{:.2f}"),
    ("API CPU us/msg", "api_cpu_us", "{:.1f}"),
    ("PG CPU us/msg", "pg_cpu_us", "{:.1f}"),
    ("client us/msg", "client_cpu_us", "{:.1f}"),
    ("load before", "load", "{:.2f}"),
]


def _print_table(results: list[RunResult]) -> None:
    widths = [max(len(title), 10) for title, _, _ in COLUMNS]
    header = "run     " + " ".join(
        f"{t:>{w}}" for (t, _, _), w in zip(COLUMNS, widths, strict=True)
    )
    print(header)
    print("-" * len(header))
    rows = [(str(n), vars(r)) for n, r in enumerate(results, start=1)]
    medians = {attr: statistics.median(vars(r)[attr] for r in results) for _, attr, _ in COLUMNS}
    for label, values in [*rows, ("median", medians)]:
        cells = (
            f"{fmt.format(values[attr]):>{w}}"
            for (_, attr, fmt), w in zip(COLUMNS, widths, strict=True)
        )
        print(f"{label:<8}" + " ".join(cells))
    print(
        "targets on 2 cores: (a) >= 20,000 msgs/s, (b) p50 <= 2 ms, p99 <= 10 ms; "
        f"{os.cpu_count()} CPUs here; client, API and Postgres share them"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the (a) phase")
    parser.add_argument("--requests", type=int, default=2000, help="requests in the (b) phase")
    args = parser.parse_args()
    results = []
    for run in range(args.runs):
        results.append(await one_run(run, args.seconds, args.requests))
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    _print_table(results)


if __name__ == "__main__":
    asyncio.run(main())
