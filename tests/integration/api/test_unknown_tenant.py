"""One answer for a tenant that does not exist: every tenant-scoped route, read or write, answers
404 `Tenant '<id>' not found` to the admin (never an empty list that reads as "nothing yet"),
except where the v0.6 wire contract has its own answer (suspend/activate: 400 `tenant not
found`); a create route takes the tenant from the query like every other route."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.api.conftest import Api
from tests.integration.api.payloads import tenant_with_account

NOSUCH = "nosuch"
# (method, path, query, json body) of every route that acts on one tenant named by the admin.
SCOPED_ROUTES: list[tuple[str, str, dict[str, str], Any]] = [
    ("GET", "/messages", {"tenant_id": NOSUCH}, None),
    ("GET", "/messages/m1/events", {"tenant_id": NOSUCH}, None),
    ("GET", "/accounts", {"tenant_id": NOSUCH}, None),
    ("DELETE", "/account/smtp1", {"tenant_id": NOSUCH}, None),
    ("POST", "/account", {}, {"id": "a", "tenant_id": NOSUCH, "host": "h", "port": 25}),
    ("GET", "/webhooks", {"tenant_id": NOSUCH}, None),
    ("POST", "/webhooks", {"tenant_id": NOSUCH}, {"url": "https://hooks.example.org/x"}),
    ("POST", "/webhooks", {}, {"tenant_id": NOSUCH, "url": "https://hooks.example.org/x"}),
    ("GET", "/webhooks/wh1", {"tenant_id": NOSUCH}, None),
    ("PATCH", "/webhooks/wh1", {"tenant_id": NOSUCH}, {"active": False}),
    ("DELETE", "/webhooks/wh1", {"tenant_id": NOSUCH}, None),
    ("POST", "/webhooks/wh1/rotate-secret", {"tenant_id": NOSUCH}, None),
    ("POST", "/webhooks/wh1/retry-failed", {"tenant_id": NOSUCH}, None),
    ("GET", "/suppressions", {"tenant_id": NOSUCH}, None),
    ("POST", "/suppressions", {"tenant_id": NOSUCH}, {"address": "a@example.org"}),
    ("DELETE", "/suppressions/a@example.org", {"tenant_id": NOSUCH}, None),
    ("GET", "/providers", {"tenant_id": NOSUCH}, None),
    ("PUT", "/providers/mailgun", {"tenant_id": NOSUCH}, {"signing_key": "k" * 32}),
    ("DELETE", "/providers/mailgun", {"tenant_id": NOSUCH}, None),
    ("POST", "/commands/delete-messages", {"tenant_id": NOSUCH}, {"ids": ["m1"]}),
    ("POST", "/commands/cleanup-messages", {"tenant_id": NOSUCH}, {}),
    ("POST", "/commands/run-now", {"tenant_id": NOSUCH}, None),
    ("GET", f"/tenant/{NOSUCH}", {}, None),
    ("PUT", f"/tenant/{NOSUCH}", {}, {"name": "x"}),
]


@pytest.mark.parametrize(("method", "path", "query", "body"), SCOPED_ROUTES)
async def test_an_unknown_tenant_is_404_on_every_scoped_route(
    api: Api, method: str, path: str, query: dict[str, str], body: Any
) -> None:
    await tenant_with_account(api)  # another tenant exists, with an account and rows
    r = await api.client.request(method, path, params=query, json=body, headers=api.admin())
    assert r.status_code == 404, (method, path, r.text)
    assert r.json()["detail"] == f"Tenant '{NOSUCH}' not found"
    async with api.pool.acquire() as conn:
        assert not await conn.fetchval("SELECT count(*) FROM webhooks")
        assert not await conn.fetchval("SELECT count(*) FROM suppressions")


async def test_suspend_and_activate_keep_the_contracts_answer(api: Api) -> None:
    for verb in ("suspend", "activate"):
        r = await api.client.post(
            f"/commands/{verb}", params={"tenant_id": NOSUCH}, headers=api.admin()
        )
        assert r.status_code == 400, r.text  # anchor-behaviour: 400 `tenant not found`
        assert "tenant not found" in r.json()["detail"]


async def test_a_create_route_takes_the_tenant_from_the_query(api: Api) -> None:
    await tenant_with_account(api)
    r = await api.client.post(
        "/webhooks",
        params={"tenant_id": "acme"},
        json={"url": "https://hooks.example.org/x"},
        headers=api.admin(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["tenant_id"] == "acme"
    r = await api.client.post(
        "/suppressions",
        params={"tenant_id": "acme"},
        json={"address": "gone@example.org"},
        headers=api.admin(),
    )
    assert r.status_code == 200, r.text
    # Both given and different: refused, naming both, nothing stored.
    r = await api.client.post(
        "/webhooks",
        params={"tenant_id": "acme"},
        json={"tenant_id": "other", "url": "https://hooks.example.org/y"},
        headers=api.admin(),
    )
    assert r.status_code == 400
    assert "'acme'" in r.json()["detail"]
    assert "'other'" in r.json()["detail"]
    r = await api.client.post(
        "/suppressions",
        params={"tenant_id": "acme"},
        json={"tenant_id": "other", "address": "x@example.org"},
        headers=api.admin(),
    )
    assert r.status_code == 400
    async with api.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM webhooks") == 1
        assert await conn.fetchval("SELECT count(*) FROM suppressions") == 1


async def test_a_known_tenant_with_nothing_yet_lists_empty(api: Api) -> None:
    await api.new_tenant("empty")
    for path, key in (
        ("/messages", "messages"),
        ("/accounts", "accounts"),
        ("/webhooks", "webhooks"),
        ("/suppressions", "suppressions"),
        ("/providers", "providers"),
    ):
        r = await api.client.get(path, params={"tenant_id": "empty"}, headers=api.admin())
        assert r.status_code == 200, (path, r.text)
        assert r.json()[key] == []
