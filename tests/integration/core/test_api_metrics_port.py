"""`GMP_API_METRICS_PORT`: the API process serves /metrics on a port of its own, so the public
API port need not expose it (issue 9 item 6); unset, /metrics stays on the API port."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from mail_proxy.encryption import generate_key
from tests.conftest import free_port
from tests.integration.core.cli import cli_env


async def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        async with httpx.AsyncClient() as client:
            return (await client.get(url, timeout=2)).status_code == 200
    return False


@contextlib.asynccontextmanager
async def api_process(dsn: str, log: Path, **env: str) -> AsyncIterator[int]:
    port = free_port()
    full_env = cli_env(
        GMP_DATABASE_URL=dsn,
        GMP_API_TOKEN="admin-token",
        MAIL_PROXY_ENCRYPTION_KEY=generate_key(),
        GMP_HOST="127.0.0.1",
        GMP_PORT=str(port),
        GMP_LOG_LEVEL="WARNING",
        **env,
    )
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mail_proxy_cli.main", "api", env=full_env, stdout=out, stderr=out
        )
    try:
        for _ in range(600):
            assert proc.returncode is None, log.read_text()
            if await _answers(f"http://127.0.0.1:{port}/health"):
                break
            await asyncio.sleep(0.1)
        yield port
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout=60)
    assert proc.returncode == 0, log.read_text()


async def test_metrics_move_to_their_own_port_when_configured(dsn: str, tmp_path: Path) -> None:
    metrics_port = free_port()
    async with (
        api_process(
            dsn,
            tmp_path / "api.log",
            GMP_API_METRICS_PORT=str(metrics_port),
            GMP_METRICS_TOKEN="scrape-me",
        ) as port,
        httpx.AsyncClient() as client,
    ):
        on_api = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert on_api.status_code == 404
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        assert (await client.get(metrics_url)).status_code == 401
        scraped = await client.get(metrics_url, headers={"Authorization": "Bearer scrape-me"})
        assert scraped.status_code == 200
        assert "gmp_pending_messages" in scraped.text
        assert (await client.get(f"http://127.0.0.1:{metrics_port}/ready")).status_code == 200
        # The metrics port serves nothing of the API.
        assert (await client.get(f"http://127.0.0.1:{metrics_port}/tenants")).status_code == 404


async def test_unset_metrics_stay_on_the_api_port(dsn: str, tmp_path: Path) -> None:
    async with api_process(dsn, tmp_path / "api.log") as port, httpx.AsyncClient() as client:
        scraped = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert scraped.status_code == 200
    assert "gmp_pending_messages" in scraped.text
