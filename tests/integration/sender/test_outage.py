"""A Postgres outage under load: `mail-proxy serve` (API + sender + reporter in one process)
keeps running, answers 503 with Retry-After, keeps the outcomes it learnt and resumes.

The test runs its own embedded Postgres (not the session's shared one) so it can stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from mail_proxy.db.migrate import migrate
from mail_proxy.db.pool import connect
from mail_proxy.encryption import generate_key
from tests.conftest import free_port
from tests.integration.sender.conftest import eventually
from tests.integration.sender.processes import ENTRY
from tests.integration.sender.servers import SmtpSink, smtp_server
from tests.integration.sender.stoppable_postgres import StoppablePostgres, stoppable_pg

pytestmark = pytest.mark.slow
__all__ = ["stoppable_pg"]  # the fixture
ADMIN = {"X-API-Token": "admin-token"}
COUNT = 1500


@contextlib.asynccontextmanager
async def serving(dsn: str, key: str, log_path: Path) -> AsyncIterator[tuple[Any, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GMP_", "MAIL_PROXY_"))}
    env.update(
        GMP_DATABASE_URL=dsn,
        MAIL_PROXY_ENCRYPTION_KEY=key,
        GMP_API_TOKEN="admin-token",
        GMP_HOST="127.0.0.1",
        GMP_PORT=str(port),
        GMP_SENDER_METRICS_PORT="0",
        GMP_LOG_LEVEL="WARNING",
        GMP_OUTBOUND_ALLOW="127.0.0.1/32",  # the test's SMTP sink is on loopback
    )
    log = log_path.open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "serve", env=env, stdout=log, stderr=log
    )
    try:
        yield proc, port
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def _status(api: httpx.AsyncClient, method: str, path: str, **kw: Any) -> httpx.Response:
    return await api.request(method, path, headers=ADMIN, **kw)


async def _sent(dsn: str) -> int:
    conn = await connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM messages WHERE state = 'sent'"))
    finally:
        await conn.close()


@pytest.mark.timeout(300)
async def test_serve_survives_a_postgres_outage_under_load(
    stoppable_pg: StoppablePostgres, tmp_path: Path
) -> None:
    dsn = stoppable_pg.dsn
    conn = await connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    sink = SmtpSink(delay_seconds=0.02)
    log_path = tmp_path / "serve.log"
    async with (
        smtp_server(sink) as smtp_port,
        serving(dsn, generate_key(), log_path) as (proc, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as api,
    ):

        async def answers() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return (await api.get("/ready")).status_code == 200
            return False

        await eventually(answers, timeout=60)
        r = await _status(api, "POST", "/tenant", json={"id": "acme"})
        assert r.status_code == 200, r.text
        account = {"id": "smtp1", "tenant_id": "acme", "host": "127.0.0.1", "port": smtp_port}
        r = await _status(api, "POST", "/account", json={**account, "use_tls": False})
        assert r.status_code == 200, r.text
        for start in range(0, COUNT, 500):
            batch = [
                {
                    "id": f"m{i:05d}",
                    "tenant_id": "acme",
                    "account_id": "smtp1",
                    "from": "a@example.org",
                    "to": "b@example.org",
                    "subject": "hi",
                }
                for i in range(start, start + 500)
            ]
            r = await _status(api, "POST", "/commands/add-messages", json={"messages": batch})
            assert r.json()["queued"] == 500, r.text
        await eventually(lambda: _sent_at_least(dsn, 300), timeout=60, every=0.05)

        stoppable_pg.stop()
        stopped_at = time.time()
        during: list[httpx.Response] = []
        while time.time() - stopped_at < 20:
            during.append(await api.get("/ready"))
            during.append(await _status(api, "GET", "/messages", params={"tenant_id": "acme"}))
            during.append(
                await _status(
                    api,
                    "POST",
                    "/commands/add-messages",
                    json={"messages": [{**batch[0], "id": "late"}]},
                )
            )
            assert (await api.get("/health")).status_code == 200
            assert proc.returncode is None, log_path.read_text()[-3000:]
            await asyncio.sleep(1.0)
        accepted_during_outage = len(sink.received)
        stoppable_pg.start()
        restarted_at = time.time()

        await eventually(lambda: _sent_at_least(dsn, COUNT), timeout=120, every=0.2)
        assert proc.returncode is None, log_path.read_text()[-3000:]
        assert (await api.get("/ready")).status_code == 200

    for r in during:
        assert r.status_code == 503, (r.request.url, r.status_code, r.text)
        assert "detail" in r.json() or "reason" in r.json()
        assert int(r.headers["Retry-After"]) > 0
    counts = Counter(sink.mail_ids())
    assert set(counts) == {f"m{i:05d}" for i in range(COUNT)}  # nothing lost
    assert [i for i, n in counts.items() if n > 1] == []  # outcomes kept through the outage
    # Work resumed promptly: the first acceptance after the restart came within 10 s.
    after = [r.accepted_at for r in sink.received if r.accepted_at > restarted_at]
    assert accepted_during_outage < COUNT
    assert after
    assert min(after) - restarted_at < 10, min(after) - restarted_at


async def _sent_at_least(dsn: str, count: int) -> bool:
    try:
        return await _sent(dsn) >= count
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
