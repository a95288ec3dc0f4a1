"""`Idempotency-Key` on add-messages: replays, reuse with another body, concurrent duplicates,
failed requests, tenant scope and retention."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from mail_proxy.db.retention import purge
from tests.integration.api.conftest import Api
from tests.integration.api.payloads import message, tenant_with_account


async def _post(
    api: Api, messages: list[dict[str, Any]], key: str | None, token: str | None = None
) -> Any:
    headers = {"X-API-Token": token or api.admin_token}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await api.client.post(
        "/commands/add-messages", json={"messages": messages}, headers=headers
    )


async def _count(api: Api, sql: str = "SELECT count(*) FROM messages") -> int:
    async with api.pool.acquire() as conn:
        value: int = await conn.fetchval(sql)
        return value


async def test_a_replay_returns_the_first_answer_and_leaves_the_queue_alone(api: Api) -> None:
    await tenant_with_account(api)
    first = await _post(api, [message("m1"), message("m2")], "order-42")
    assert first.status_code == 200, first.text
    async with api.pool.acquire() as conn:
        await conn.execute("UPDATE messages SET state = 'sent', smtp_ts = 1 WHERE id = 'm1'")
    commands = await _count(api, "SELECT count(*) FROM command_log")

    again = await _post(api, [message("m1"), message("m2")], "order-42")
    assert again.status_code == 200
    assert again.json() == first.json() == {"ok": True, "queued": 2, "rejected": []}
    assert again.headers["Idempotent-Replayed"] == "true"
    # Nothing touched: m1 is still sent (a plain resubmission would answer "already sent"),
    # no row added, nothing logged.
    async with api.pool.acquire() as conn:
        assert await conn.fetchval("SELECT state FROM messages WHERE id = 'm1'") == "sent"
    assert await _count(api) == 2
    assert await _count(api, "SELECT count(*) FROM command_log") == commands


async def test_the_same_key_with_another_body_is_refused(api: Api) -> None:
    await tenant_with_account(api)
    assert (await _post(api, [message("m1")], "k1")).status_code == 200
    r = await _post(api, [message("m1", subject="changed")], "k1")
    assert r.status_code == 422
    assert "different request body" in r.json()["detail"]
    assert await _count(api) == 1


async def test_formatting_does_not_change_the_request(api: Api) -> None:
    await tenant_with_account(api)
    body = {"messages": [message("m1")]}
    headers = {**api.admin(), "Idempotency-Key": "fmt", "Content-Type": "application/json"}
    r1 = await api.client.post(
        "/commands/add-messages", content=f'{{"messages": [{_compact(body)}]}}', headers=headers
    )
    r2 = await api.client.post(
        "/commands/add-messages",
        content=f'{{\n  "messages" : [ {_compact(body)} ]\n}}',
        headers=headers,
    )
    assert r1.status_code == r2.status_code == 200
    assert r2.headers.get("Idempotent-Replayed") == "true"


def _compact(body: dict[str, Any]) -> str:
    return json.dumps(body["messages"][0])


async def test_a_concurrent_duplicate_gets_409(api: Api) -> None:
    await tenant_with_account(api)
    # Hold the key the way a request in progress does, then send the duplicate.
    async with api.pool.acquire() as conn, conn.transaction():
        assert await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 0x6d70))",
            "",
            "busy",
        )
        r = await _post(api, [message("m1")], "busy")
        assert r.status_code == 409
        assert "still being processed" in r.json()["detail"]
    assert await _count(api) == 0
    # Once the first is over, the key works.
    assert (await _post(api, [message("m1")], "busy")).status_code == 200


async def test_simultaneous_requests_queue_once(api: Api) -> None:
    await tenant_with_account(api)
    answers = await asyncio.gather(*(_post(api, [message("m1")], "race") for _ in range(8)))
    codes = sorted(r.status_code for r in answers)
    assert set(codes) <= {200, 409}
    assert 200 in codes
    assert await _count(api, "SELECT count(*) FROM command_log WHERE endpoint = 'addMessages'") == 1


async def test_a_failed_request_does_not_keep_its_key(api: Api) -> None:
    await tenant_with_account(api)
    async with api.pool.acquire() as conn:
        # The enqueue statement fails inside the database: the API answers 500.
        await conn.execute("ALTER TABLE messages ADD CONSTRAINT no_m1 CHECK (id <> 'm1')")
    r = await _post(api, [message("m1")], "flaky")
    assert r.status_code == 500
    assert await _count(api, "SELECT count(*) FROM idempotency_keys") == 0
    async with api.pool.acquire() as conn:
        await conn.execute("ALTER TABLE messages DROP CONSTRAINT no_m1")
    r = await _post(api, [message("m1")], "flaky")
    assert r.status_code == 200
    assert r.json()["queued"] == 1
    assert "Idempotent-Replayed" not in r.headers


async def test_a_business_refusal_is_replayed_too(api: Api) -> None:
    await tenant_with_account(api)
    first = await _post(api, [message("m1", account_id="nope")], "refused")
    assert first.status_code == 400
    again = await _post(api, [message("m1", account_id="nope")], "refused")
    assert again.status_code == 400
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_keys_are_scoped_per_tenant(api: Api) -> None:
    acme = await tenant_with_account(api, "acme")
    beta = await tenant_with_account(api, "beta")
    r1 = await _post(api, [message("m1", tenant_id="acme")], "shared", token=acme)
    r2 = await _post(api, [message("m1", tenant_id="beta")], "shared", token=beta)
    assert r1.status_code == r2.status_code == 200
    assert "Idempotent-Replayed" not in r2.headers
    assert await _count(api) == 2


async def test_a_bad_key_is_refused_with_422(api: Api) -> None:
    await tenant_with_account(api)
    for bad in (b"", b"x" * 256, b"with space", "caf\u00e9".encode()):
        headers = {**api.admin(), "Idempotency-Key": bad}
        r = await api.client.post(
            "/commands/add-messages", json={"messages": [message("m1")]}, headers=headers
        )
        assert r.status_code == 422, (bad, r.text)
        assert "Idempotency-Key" in r.text
    assert await _count(api) == 0


async def test_an_expired_key_runs_again_and_retention_purges_keys(api: Api) -> None:
    await tenant_with_account(api)
    assert (await _post(api, [message("m1")], "old")).status_code == 200
    async with api.pool.acquire() as conn:
        await conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
    r = await _post(api, [message("m2")], "old")  # another body: fine once the key expired
    assert r.status_code == 200
    assert "Idempotent-Replayed" not in r.headers
    async with api.pool.acquire() as conn:
        await conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        purged = await purge(
            conn,
            now=time.time(),
            report_retention_seconds=0,
            command_log_retention_seconds=None,
            idempotency_ttl_seconds=86_400,
        )
    assert purged is not None
    assert purged.idempotency_keys == 1
    assert await _count(api, "SELECT count(*) FROM idempotency_keys") == 0
