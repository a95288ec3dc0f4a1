"""The sender's probe endpoint: readiness from the database, queue gauges in its metrics."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mail_proxy.db.pool import create_pool
from mail_proxy.metrics import Metrics
from mail_proxy_sender.probes import create_probe_app
from tests.conftest import serving


@contextlib.asynccontextmanager
async def probe_client(dsn: str) -> AsyncIterator[httpx.AsyncClient]:
    pool = await create_pool(dsn, max_size=2)
    try:
        async with (
            serving(create_probe_app(pool, Metrics())) as port,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            yield client
    finally:
        await pool.close()


async def test_metrics_report_the_shared_queue_depth(dsn: str) -> None:
    pool = await create_pool(dsn, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO tenants (id) VALUES ('acme')")
            await conn.execute(
                "INSERT INTO messages (id, tenant_id, priority, payload) "
                "SELECT 'm' || n, 'acme', n % 2, '{}'::jsonb FROM generate_series(1, 5) n"
            )
    finally:
        await pool.close()
    async with probe_client(dsn) as client:
        assert (await client.get("/ready")).json() == {"status": "ready"}
        text = (await client.get("/metrics")).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("gmp_pending_messages", ())] == 5
    assert (
        samples[("gmp_pending_by_tenant_priority", (("priority", "1"), ("tenant_id", "acme")))] == 3
    )


async def test_not_ready_while_the_schema_is_behind(empty_dsn: str) -> None:
    async with probe_client(empty_dsn) as client:
        r = await client.get("/ready")
    assert r.status_code == 503
    assert r.json()["reason"].startswith("schema not current")
