"""The sender under test, in-process, against the test's own database and real servers.

`world` gives a pool on the test database, an encryption key, and helpers that create
tenants/accounts and enqueue messages through the same core functions the API uses.
`running_sender(world, **settings)` runs a full sender (worker, reporter, retention) until
the block ends, and drains it like SIGTERM would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from mail_proxy.config import Settings
from mail_proxy.db import accounts as db_accounts
from mail_proxy.db import tenants as db_tenants
from mail_proxy.db.messages import EnqueueItem, enqueue
from mail_proxy.db.pool import create_pool
from mail_proxy.encryption import SecretBox, decode_key, generate_key
from mail_proxy.metrics import Metrics
from mail_proxy.redact import seal_client_auth
from mail_proxy_sender.service import SenderContext, run_sender
from tests.integration.sender import servers

FAST = {
    "send_loop_interval_seconds": 0.2,
    "outcome_flush_seconds": 0.02,
    "retention_interval_seconds": 3600.0,
    "smtp_timeout_seconds": 5.0,
    "shutdown_grace_seconds": 5.0,
    # The test's HTTP servers listen on loopback, which the SSRF guard refuses unless allowed.
    "outbound_allow": ("127.0.0.1/32",),
}


@dataclass
class World:
    dsn: str
    pool: asyncpg.Pool
    box: SecretBox
    key: str  # base64, as MAIL_PROXY_ENCRYPTION_KEY

    async def tenant(self, tenant_id: str, **fields: Any) -> None:
        if "client_auth" in fields:
            fields["client_auth"] = seal_client_auth(self.box, fields["client_auth"])
        async with self.pool.acquire() as conn:
            await db_tenants.upsert_tenant(
                conn, tenant_id=tenant_id, fields=fields, api_key_hash=None
            )

    async def account(self, tenant_id: str, account_id: str, port: int, **fields: Any) -> None:
        fields = {"host": "127.0.0.1", "port": port, "use_tls": False, **fields}
        if fields.get("password"):
            fields["password"] = self.box.encrypt(fields["password"])
        async with self.pool.acquire() as conn:
            await db_accounts.upsert_account(
                conn, tenant_id=tenant_id, account_id=account_id, fields=fields
            )

    async def enqueue(self, tenant_id: str, account_id: str, *messages: dict[str, Any]) -> None:
        items = []
        for message in messages:
            payload = {
                "tenant_id": tenant_id,
                "account_id": account_id,
                "from": "sender@example.org",
                "to": ["rcpt@example.org"],
                "subject": "hello",
                "body": "hi",
                "priority": 2,
                **message,
            }
            items.append(
                EnqueueItem(
                    id=payload["id"],
                    tenant_id=tenant_id,
                    account_id=account_id,
                    priority=payload["priority"],
                    payload=payload,
                    batch_code=payload.get("batch_code"),
                    deferred_ts=payload.get("deferred_ts"),
                    reason=None,
                )
            )
        async with self.pool.acquire() as conn:
            for start in range(0, len(items), 1000):
                await enqueue(
                    conn,
                    items=items[start : start + 1000],
                    now_ts=int(time.time()),
                    log_tenant_id=None,
                    log_payload=None,
                )

    async def message(self, tenant_id: str, message_id: str) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM messages WHERE tenant_id = $1 AND id = $2", tenant_id, message_id
            )
        assert row is not None
        return row

    async def events(self, tenant_id: str, message_id: str | None = None) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return list(
                await conn.fetch(
                    "SELECT * FROM message_events WHERE tenant_id = $1 "
                    "AND ($2::text IS NULL OR message_id = $2) ORDER BY id",
                    tenant_id,
                    message_id,
                )
            )

    async def states(self, tenant_id: str) -> dict[str, str]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, state FROM messages WHERE tenant_id = $1", tenant_id
            )
        return {r["id"]: r["state"] for r in rows}

    async def rows(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return list(await conn.fetch(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(sql, *args)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0, every: float = 0.05
) -> None:
    """Wait until `check()` is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout} s")
        await asyncio.sleep(every)


@pytest.fixture(params=["one command at a time", "pipelined"])
def either_exchange(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """The test runs against sinks that do not offer PIPELINING and, again, against sinks that
    do (RFC 2920): a transaction's answers must mean the same either way. True when pipelined."""
    pipelined: bool = request.param == "pipelined"
    monkeypatch.setattr(servers, "PIPELINING_BY_DEFAULT", pipelined)
    return pipelined


@pytest.fixture
async def world(dsn: str) -> AsyncIterator[World]:
    pool = await create_pool(dsn, max_size=5)
    key = generate_key()
    try:
        yield World(dsn, pool, SecretBox(decode_key(key)), key)
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def running_sender(
    world: World,
    *,
    owner: str | None = None,
    download_secret: bytes | None = None,
    **overrides: Any,
) -> AsyncIterator[SenderContext]:
    settings = Settings(**{**FAST, **overrides})
    pool = await create_pool(world.dsn, max_size=6)
    ctx = SenderContext(
        settings=settings,
        pool=pool,
        box=world.box,
        metrics=Metrics(),
        dsn=world.dsn,
        download_secret=download_secret,
    )
    if owner is not None:
        ctx.owner = owner
    stop = asyncio.Event()
    task = asyncio.create_task(run_sender(ctx, stop))
    try:
        yield ctx
    finally:
        stop.set()
        try:
            await task
        finally:
            await pool.close()


def counter(ctx: SenderContext, name: str, **labels: str) -> float:
    """Current value of a metric sample (0 when absent)."""
    value = ctx.metrics.registry.get_sample_value(name, labels or None)
    return value or 0.0
