"""`mail-proxy serve` on a laptop: embedded Postgres, an admin token generated and printed once,
`mail-proxy token` to see it again, and SIGTERM stopping the process *and* its Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from tests.conftest import free_port
from tests.integration.core.cli import cli_env, run_cli

TOKEN_LINE = "Generated admin token (shown once): "


@dataclass
class Serving:
    proc: asyncio.subprocess.Process
    port: int
    lines: list[str] = field(default_factory=list)

    def token(self) -> str | None:
        found = [
            line.removeprefix(TOKEN_LINE) for line in self.lines if line.startswith(TOKEN_LINE)
        ]
        assert len(found) <= 1, self.lines
        return found[0] if found else None


async def _read_lines(serving: Serving, stream: asyncio.StreamReader) -> None:
    while line := await stream.readline():
        serving.lines.append(line.decode().rstrip("\n"))


async def _wait_until_answering(serving: Serving) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{serving.port}") as client:
        for _ in range(600):
            assert serving.proc.returncode is None, serving.lines
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/health")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"mail-proxy serve never answered: {serving.lines}")


@contextlib.asynccontextmanager
async def serving(data_dir: Path, log: Path) -> AsyncIterator[Serving]:
    port = free_port()
    with log.open("ab") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mail_proxy_cli.main",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            env=cli_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    assert proc.stdout is not None
    running = Serving(proc, port)
    reader = asyncio.create_task(_read_lines(running, proc.stdout))
    try:
        await _wait_until_answering(running)
        yield running
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout=60)
        await reader


def _postgres_pids(pgdata: Path) -> set[int]:
    """The embedded postmaster (from its pid file) and all its children."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    proc = psutil.Process(postmaster)
    assert str(pgdata) in " ".join(proc.cmdline())
    return {postmaster, *(child.pid for child in proc.children(recursive=True))}


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
    return alive


def _postgres_using(pgdata: Path) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if str(pgdata) in " ".join(proc.info["cmdline"] or ()):
                found.append(proc.info["pid"])
    return found


async def test_serve_generates_a_token_once_and_stops_its_postgres(tmp_path: Path) -> None:
    data_dir = tmp_path / "instance"
    pgdata = data_dir / "pgdata"
    log = tmp_path / "serve.log"

    async with serving(data_dir, log) as first:
        token = first.token()
        assert token is not None, first.lines
        assert len(token) == 43
        pids = _postgres_pids(pgdata)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{first.port}") as client:
            assert (await client.get("/status", headers={"X-API-Token": token})).status_code == 200
            assert (await client.get("/status")).status_code == 401
        code, out, err = await run_cli("token", "--data-dir", str(data_dir), env=cli_env())
        assert code == 0, err
        assert out.strip() == token
    assert first.proc.returncode == 0, log.read_text()
    assert _alive(pids) == set()
    assert _postgres_using(pgdata) == []
    assert not (pgdata / "postmaster.pid").exists()

    async with serving(data_dir, log) as second:
        assert second.token() is None, second.lines
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{second.port}") as client:
            assert (await client.get("/status", headers={"X-API-Token": token})).status_code == 200
        pids = _postgres_pids(pgdata)
    assert second.proc.returncode == 0, log.read_text()
    assert _alive(pids) == set()
    assert _postgres_using(pgdata) == []
    assert token not in log.read_text()  # printed once on stdout, never logged
