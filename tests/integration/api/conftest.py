"""A real API server on 127.0.0.1 per test, on the test's own database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from mail_proxy.admin_token import ensure_admin_token
from mail_proxy.config import Settings
from mail_proxy.db.pool import create_pool
from mail_proxy.encryption import SecretBox, decode_key, generate_key
from mail_proxy.metrics import Metrics
from mail_proxy_api.app import create_app
from mail_proxy_api.context import ApiContext
from tests.conftest import serving


@dataclass
class Api:
    """A running API: an httpx client on its URL, the admin token and the pool behind it."""

    client: httpx.AsyncClient
    admin_token: str
    pool: asyncpg.Pool
    box: SecretBox
    metrics: Metrics

    def admin(self) -> dict[str, str]:
        return {"X-API-Token": self.admin_token}

    async def new_tenant(self, tenant_id: str, **fields: Any) -> str:
        """Create a tenant (admin) and return its API key."""
        r = await self.client.post(
            "/tenant", json={"id": tenant_id, **fields}, headers=self.admin()
        )
        assert r.status_code == 200, r.text
        key: str = r.json()["api_key"]
        return key

    async def new_account(self, tenant_id: str, account_id: str = "smtp1", **fields: Any) -> None:
        body = {"id": account_id, "tenant_id": tenant_id, "host": "127.0.0.1", "port": 2525}
        r = await self.client.post("/account", json={**body, **fields}, headers=self.admin())
        assert r.status_code == 200, r.text


@contextlib.asynccontextmanager
async def running_api(
    dsn: str,
    *,
    settings: Settings | None = None,
    key: bytes | None = None,
    download_secret: bytes | None = None,
    **ctx_fields: Any,
) -> AsyncIterator[Api]:
    settings = settings or Settings()
    pool = await create_pool(dsn, max_size=5)
    async with pool.acquire() as conn:
        token = await ensure_admin_token(conn)
    assert token is not None
    box = SecretBox(key)
    metrics = Metrics()
    app = create_app(
        ApiContext(
            settings=settings,
            pool=pool,
            box=box,
            metrics=metrics,
            download_secret=download_secret,
            **ctx_fields,
        )
    )
    try:
        async with (
            serving(app) as port,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
        ):
            yield Api(client=client, admin_token=token, pool=pool, box=box, metrics=metrics)
    finally:
        try:
            # A test that fails while holding a connection must not hang the suite here.
            await asyncio.wait_for(pool.close(), timeout=10)
        except TimeoutError:
            pool.terminate()


@pytest.fixture
async def api(dsn: str) -> AsyncIterator[Api]:
    async with running_api(dsn, key=decode_key(generate_key())) as running:
        yield running
