"""Large-file benchmark: one message with a 200 MB attachment through a real `mail-proxy sender`
process with `action: rewrite`, then its link downloaded from a `mail-proxy api` process.
Prints figures; asserts nothing.

    python bench/large_file.py                 # 200 MB, fetched over HTTP (http_url)
    python bench/large_file.py --size-mb 50    # the issue's "done when" case
    python bench/large_file.py --runs 3        # medians of three runs

The attachment is served by a plain HTTP server on 127.0.0.1 (allow-listed with
GMP_OUTBOUND_ALLOW), offloaded to `file://` storage in a temporary folder, and the mail lands in
an aiosmtpd sink in this process. Reported: the sender's peak RSS growth over its idle RSS while
it fetches, spools, uploads and sends (the target is under 64 MB for 200 MB: the file never sits
whole in memory), the size of the mail actually sent, the API's RSS growth while it streams the
download, and whether the downloaded bytes are the original ones.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.smtp import SMTP, Envelope, Session

sys.path.insert(0, str(Path(__file__).parent))
from delivery import (  # the sibling benchmark's helpers
    ADMIN_TOKEN,
    Proc,
    database,
    free_port,
    fresh_database,
    wait_http,
)

MIB = 1024 * 1024
SECRET = "bench-download-secret-0123456789abcdef"
LINK = re.compile(rb"\): (http://\S+)")


class MailSink:
    """Keeps the one mail it receives (small: the attachment became a link)."""

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.arrived = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data = bytes(envelope.original_content or b"")
        self.arrived.set()
        return "250 OK"


def write_file(path: Path, size: int) -> str:
    """A file of `size` random-looking bytes, written in chunks; its SHA-256."""
    digest = hashlib.sha256()
    block = os.urandom(MIB)
    with path.open("wb") as out:
        for i in range(0, size, MIB):
            chunk = block[: min(MIB, size - i)] + i.to_bytes(8, "big")
            chunk = chunk[: min(MIB, size - i)]
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def file_server(folder: Path) -> Iterator[int]:
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


async def _sample_until(procs: list[Proc], done: asyncio.Event) -> None:
    while not done.is_set():
        for proc in procs:
            proc.sample()
        await asyncio.sleep(0.02)


async def _idle_rss(proc: Proc) -> int:
    proc.peak_rss = 0
    for _ in range(20):
        proc.sample()
        await asyncio.sleep(0.05)
    return proc.peak_rss


async def one_run(
    args: argparse.Namespace, server_dsn: str, run: int, work: Path
) -> dict[str, Any]:
    dsn = await fresh_database(server_dsn, f"bench_large_file_{run}")
    files, store, spool = work / f"files{run}", work / f"store{run}", work / f"spool{run}"
    for folder in (files, store, spool):
        folder.mkdir()
    size = int(args.size_mb * MIB)
    sha = write_file(files / "big.bin", size)
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("GMP_", "MAIL_PROXY_"))}
    base_env.update(
        GMP_DATABASE_URL=dsn,
        GMP_API_TOKEN=ADMIN_TOKEN,
        GMP_HOST="127.0.0.1",
        GMP_LOG_LEVEL="WARNING",
        GMP_DOWNLOAD_SECRET=SECRET,
        GMP_OUTBOUND_ALLOW="127.0.0.1/32",
        GMP_LARGE_FILE_SPOOL_DIR=str(spool),
        GMP_ATTACHMENT_TIMEOUT_SECONDS="600",
    )
    api = Proc(["api"], {**base_env, "GMP_PORT": str(api_port)}, work / f"api-{run}.log")
    sender = Proc(
        ["sender"],
        {**base_env, "GMP_SENDER_METRICS_PORT": str(free_port())},
        work / f"sender-{run}.log",
    )
    sink = MailSink()
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(lambda: SMTP(sink, loop=loop), "127.0.0.1", 0)
    smtp_port = smtp.sockets[0].getsockname()[1]
    try:
        with file_server(files) as http_port:
            await api.start()
            await sender.start()
            await wait_http(api_url + "/health", api)
            await wait_http(
                f"http://127.0.0.1:{sender.env['GMP_SENDER_METRICS_PORT']}/health", sender
            )
            headers = {"X-API-Token": ADMIN_TOKEN}
            async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=60) as client:
                config = {
                    "enabled": True,
                    "max_size_mb": 10,
                    "storage_url": f"file://{store}",
                    "public_base_url": api_url,
                    "action": "rewrite",
                }
                r = await client.post("/tenant", json={"id": "acme", "large_file_config": config})
                r.raise_for_status()
                account = {"id": "smtp1", "tenant_id": "acme", "host": "127.0.0.1"}
                r = await client.post("/account", json={**account, "port": smtp_port})
                r.raise_for_status()
                sender_idle = await _idle_rss(sender)
                message = {
                    "id": "big-1",
                    "tenant_id": "acme",
                    "account_id": "smtp1",
                    "from": "bench@example.org",
                    "to": ["rcpt@example.org"],
                    "subject": "a big file",
                    "body": "see the link",
                    "attachments": [
                        {
                            "filename": "big.bin",
                            "storage_path": f"http://127.0.0.1:{http_port}/big.bin",
                        }
                    ],
                }
                sender.peak_rss = 0
                started = time.perf_counter()
                sampler = asyncio.create_task(_sample_until([sender], sink.arrived))
                r = await client.post("/commands/add-messages", json={"messages": [message]})
                r.raise_for_status()
                await asyncio.wait_for(sink.arrived.wait(), timeout=args.timeout)
                send_seconds = time.perf_counter() - started
                await sampler
                sender_peak = sender.peak_rss

                assert sink.data is not None
                match = LINK.search(sink.data)
                if match is None:
                    raise SystemExit("no download link in the mail; see the sender log")
                url = match[1].decode()
                api_idle = await _idle_rss(api)
                downloaded = asyncio.Event()
                sampler = asyncio.create_task(_sample_until([api], downloaded))
                digest = hashlib.sha256()
                got = 0
                started = time.perf_counter()
                async with client.stream("GET", url) as response:
                    response.raise_for_status()
                    async for chunk in response.aiter_bytes(MIB):
                        digest.update(chunk)
                        got += len(chunk)
                download_seconds = time.perf_counter() - started
                downloaded.set()
                await sampler
    finally:
        smtp.close()
        await sender.stop()
        await api.stop()
    return {
        "size_mb": size / MIB,
        "sender_idle_mb": sender_idle / MIB,
        "sender_growth_mb": (sender_peak - sender_idle) / MIB,
        "mail_kb": len(sink.data) / 1024,
        "send_seconds": send_seconds,
        "api_growth_mb": (api.peak_rss - api_idle) / MIB,
        "download_mb_s": got / MIB / download_seconds,
        "exact": got == size and digest.hexdigest() == sha,
    }


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="mp-bench-large-") as tmp:
        work = Path(tmp)
        with database(work) as server_dsn:
            results = []
            for run in range(args.runs):
                result = await one_run(args, server_dsn, run, work)
                results.append(result)
                print(
                    f"run {run + 1}: {result['size_mb']:.0f} MB attachment -> "
                    f"{result['mail_kb']:.1f} KB mail in {result['send_seconds']:.1f} s; "
                    f"sender RSS +{result['sender_growth_mb']:.1f} MB "
                    f"(idle {result['sender_idle_mb']:.0f} MB); "
                    f"download {result['download_mb_s']:.0f} MB/s, API RSS "
                    f"+{result['api_growth_mb']:.1f} MB; exact bytes: {result['exact']}"
                )
    growth = statistics.median(r["sender_growth_mb"] for r in results)
    print(
        f"median over {len(results)} run(s): sender peak RSS growth {growth:.1f} MB for a "
        f"{args.size_mb:.0f} MB attachment (ratio {growth / args.size_mb:.3f}; target < 64 MB); "
        f"API RSS growth {statistics.median(r['api_growth_mb'] for r in results):.1f} MB while "
        f"streaming it; all downloads exact: {all(r['exact'] for r in results)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=200.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
