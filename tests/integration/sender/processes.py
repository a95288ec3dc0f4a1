"""`mail-proxy sender` as real subprocesses against the test's database.

Each process gets the test database's DSN (a Unix-socket DSN) in GMP_DATABASE_URL, the test's
encryption key, its own probe port on 127.0.0.1, and nothing else from the outer environment's
GMP_* variables. Its output goes to a log file that a failing test prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port

ENTRY = "from mail_proxy_cli.main import main; main()"


class SenderProcess:
    def __init__(self, *, dsn: str, key: str, log_dir: Path, name: str, **settings: object) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = log_dir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GMP_", "MAIL_PROXY_"))}
        env.update(
            GMP_DATABASE_URL=dsn,
            MAIL_PROXY_ENCRYPTION_KEY=key,
            GMP_HOST="127.0.0.1",
            GMP_SENDER_METRICS_PORT=str(self.port),
            GMP_LOG_LEVEL="WARNING",
            # The test's SMTP and HTTP servers are on loopback, which the guard refuses otherwise.
            GMP_OUTBOUND_ALLOW="127.0.0.1/32",
        )
        for key_name, value in settings.items():
            if isinstance(value, tuple):
                value = ",".join(str(v) for v in value)
            env[f"GMP_{key_name.upper()}"] = str(value)
        self._env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", ENTRY, "sender", env=self._env, stdout=log, stderr=log
            )
        finally:
            log.close()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient() as client:
            while True:
                if self.proc.returncode is not None:
                    pytest.fail(f"{self.name} exited:\n{self.log()}")
                with contextlib.suppress(httpx.HTTPError):
                    r = await client.get(f"http://127.0.0.1:{self.port}/ready", timeout=2)
                    if r.status_code == 200:
                        return
                if asyncio.get_running_loop().time() > deadline:
                    pytest.fail(f"{self.name} not ready:\n{self.log()}")
                await asyncio.sleep(0.1)

    async def sent_total(self) -> float:
        async with httpx.AsyncClient() as client:
            r = await client.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5)
        total = 0.0
        for family in text_string_to_metric_families(r.text):
            if family.name == "gmp_sent":
                total += sum(s.value for s in family.samples if s.name == "gmp_sent_total")
        return total

    async def kill(self) -> None:
        """SIGKILL: no drain, no release, nothing flushed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> int:
        """SIGTERM and wait for the drain; returns the exit code."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(60):
                return await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            pytest.fail(f"{self.name} did not stop on SIGTERM:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


@contextlib.asynccontextmanager
async def sender_processes(count: int, **kwargs: Any) -> AsyncIterator[list[SenderProcess]]:
    """`count` senders, started and ready; killed at the end if a test left one running."""
    procs = [SenderProcess(name=f"sender{i}", **kwargs) for i in range(count)]
    try:
        for proc in procs:
            await proc.start()
        for proc in procs:
            await proc.wait_ready()
        yield procs
    finally:
        for proc in procs:
            if proc.proc is not None and proc.proc.returncode is None:
                proc.proc.kill()
                await proc.proc.wait()
