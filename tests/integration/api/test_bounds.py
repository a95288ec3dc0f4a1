"""What Postgres cannot store is a 422 naming the problem, never a 500; poison message
contents are refused per message at intake; the connection stays usable after any error."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.api.conftest import Api
from tests.integration.api.payloads import add_messages, message, tenant_with_account

BIG = 2**63
INT32_OVER = 2**31

# (method, path, body) that used to reach Postgres and fail there
UNSTORABLE: list[tuple[str, str, Any]] = [
    ("POST", "/tenant", {"id": "t2", "name": "a\u0000b"}),
    ("PUT", "/tenant/acme", {"name": "x\u0000"}),
    ("POST", "/account", {"id": "a\u0000", "tenant_id": "acme", "host": "h", "port": 25}),
    ("POST", "/account", {"id": "a2", "tenant_id": "acme", "host": "h", "port": 25, "ttl": BIG}),
    (
        "POST",
        "/account",
        {"id": "a2", "tenant_id": "acme", "host": "h", "port": 25, "batch_size": INT32_OVER},
    ),
    (
        "POST",
        "/account",
        {"id": "a2", "tenant_id": "acme", "host": "h", "port": 25, "limit_per_day": 10**30},
    ),
    ("PUT", "/instance", {"bounce_poll_interval": INT32_OVER}),
    ("POST", "/commands/add-messages", {"messages": [message(subject="s\u0000")]}),
    ("POST", "/commands/add-messages", {"messages": [message(headers={"X-A\u0000": "v"})]}),
    ("POST", "/commands/add-messages", {"messages": [message(deferred_ts=BIG)]}),
    ("POST", "/commands/add-messages", {"messages": [message(deferred_ts=1e300)]}),
    ("GET", "/command-log?since_ts=" + str(BIG), None),
    ("GET", "/command-log?until_ts=" + str(BIG), None),
    ("GET", "/messages?tenant_id=acme%00", None),
    ("POST", "/commands/cleanup-messages?tenant_id=acme", {"older_than_seconds": 2**64 - 1}),
    ("GET", "/tenant/ac%00me", None),
]


@pytest.mark.parametrize(("method", "path", "body"), UNSTORABLE)
async def test_unstorable_input_is_a_422(api: Api, method: str, path: str, body: Any) -> None:
    await tenant_with_account(api)
    r = await api.client.request(method, path, json=body, headers=api.admin())
    assert r.status_code == 422, (r.status_code, r.text)
    assert "detail" in r.json()
    # the same keep-alive connection still serves
    r = await api.client.get("/tenant/acme", headers=api.admin())
    assert r.status_code == 200


@pytest.mark.parametrize("cursor", ["40000:1", "1:99999999999999999999", "-1:5", "1:-5", "x:1"])
async def test_a_cursor_no_row_can_have_is_a_400(api: Api, cursor: str) -> None:
    await tenant_with_account(api)
    r = await api.client.get(
        "/messages", params={"tenant_id": "acme", "cursor": cursor}, headers=api.admin()
    )
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["detail"] == f"invalid cursor: {cursor!r}"


POISON_MESSAGES = [
    (message("m\r\n1"), "invalid id"),
    (message("x" * 20_000), "invalid id"),
    (message("m\t2"), "invalid id"),
    (message("m3", headers={"X-Bad:Name": "v"}), "invalid header name 'X-Bad:Name'"),
    (message("m4", headers={"X-\u00c4rger": "v"}), "invalid header name 'X-\u00c4rger'"),
    (message("m5", headers={"X Bad": "v"}), "invalid header name 'X Bad'"),
    (message("m6", headers={"": "v"}), "invalid header name ''"),
]


async def test_poison_contents_are_refused_per_message(api: Api) -> None:
    await tenant_with_account(api)
    batch = [m for m, _ in POISON_MESSAGES] + [message("good")]
    r = await add_messages(api, batch)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["queued"] == 1
    reasons = {item["id"][:300]: item["reason"] for item in answer["rejected"]}
    for payload, reason in POISON_MESSAGES:
        assert reasons[payload["id"][:300]] == reason
    async with api.pool.acquire() as conn:
        stored = await conn.fetch("SELECT id, state FROM messages ORDER BY id")
    assert {(r["id"], r["state"]) for r in stored} >= {("good", "pending")}
    assert all(len(r["id"]) <= 255 and "\r" not in r["id"] for r in stored)
