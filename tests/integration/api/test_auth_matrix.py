"""Who may call what: every route x (no token, bad token, expired tenant token, another tenant,
own tenant, admin).

Admin-only routes answer 403 to tenant tokens and 401 `Admin token required` without a token;
tenant-scoped routes answer 401 `Token not authorized for this tenant` for another tenant's id;
bad or expired tokens get 401 `Invalid or missing API token`; public routes are open.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from tests.integration.api.conftest import Api
from tests.integration.api.payloads import add_messages, list_messages, message, token

INVALID = "Invalid or missing API token"
ADMIN_REQUIRED = "Admin token required"
ADMIN_ONLY = "Admin token required, tenant tokens not allowed for this operation"
WRONG_TENANT = "Token not authorized for this tenant"

# Callers in the order they are tried: whoever may change state goes last, the admin at the end.
CALLERS = ("none", "bad", "expired", "other", "own", "admin")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # the tenant in play is always "acme"
    kind: str  # public | auth | scoped | admin
    json: Any = None
    ok: int = 200
    # What another tenant's token gets when that differs from the kind's rule.
    other: tuple[int, Any] | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ROUTES = [
    Route("GET", "/health", "public"),
    Route("GET", "/ready", "public"),
    Route("GET", "/metrics", "public"),
    Route("GET", "/docs", "public"),
    Route("GET", "/redoc", "public"),
    Route("GET", "/openapi.json", "public"),
    # The signed link is the credential; this API has no download secret, hence 503 for all.
    Route("GET", "/download/{token}/{filename}", "public", ok=503),
    Route("HEAD", "/download/{token}/{filename}", "public", ok=503),
    Route("GET", "/status", "auth"),
    Route("POST", "/commands/run-now", "auth"),
    Route(
        "POST",
        "/commands/add-messages",
        "auth",
        json={"messages": [message("auth-m1")]},
        other=(400, {"error": None, "rejected": [{"id": "auth-m1", "reason": WRONG_TENANT}]}),
    ),
    Route("POST", "/commands/suspend?tenant_id=acme", "scoped"),
    Route("POST", "/commands/activate?tenant_id=acme", "scoped"),
    Route("POST", "/commands/delete-messages?tenant_id=acme", "scoped", json={"ids": ["x"]}),
    Route("POST", "/commands/cleanup-messages?tenant_id=acme", "scoped", json={}),
    Route("GET", "/messages?tenant_id=acme", "scoped"),
    Route(
        "POST",
        "/account",
        "scoped",
        json={"id": "smtp2", "tenant_id": "acme", "host": "127.0.0.1", "port": 2525},
    ),
    Route("GET", "/accounts?tenant_id=acme", "scoped"),
    Route("DELETE", "/account/smtp1?tenant_id=acme", "scoped"),
    Route("GET", "/tenant/acme", "scoped"),
    Route("PUT", "/tenant/acme", "scoped", json={"name": "ACME Inc."}),
    Route("POST", "/tenant", "admin", json={"id": "newco", "name": "New Co"}),
    Route("GET", "/tenants", "admin"),
    Route("GET", "/tenants/sync-status", "admin"),
    Route("DELETE", "/tenant/acme", "admin"),
    Route("POST", "/tenant/acme/api-key", "admin"),
    Route("DELETE", "/tenant/acme/api-key", "admin"),
    Route("GET", "/suppressions?tenant_id=acme", "scoped"),
    Route(
        "POST", "/suppressions", "scoped", json={"tenant_id": "acme", "address": "x@example.org"}
    ),
    # Nothing is suppressed when it runs: 404 past the authorization checks.
    Route("DELETE", "/suppressions/x@example.org?tenant_id=acme", "scoped", ok=404),
    # Events (issue 15). Template ids name nothing: 404 past the authorization checks.
    Route("GET", "/messages/{message_id}/events?tenant_id=acme", "scoped", ok=404),
    Route("POST", "/webhooks", "scoped", json={"tenant_id": "acme", "url": "https://h.example/x"}),
    Route("GET", "/webhooks?tenant_id=acme", "scoped"),
    Route("GET", "/webhooks/{webhook_id}?tenant_id=acme", "scoped", ok=404),
    Route("PATCH", "/webhooks/{webhook_id}?tenant_id=acme", "scoped", json={}, ok=404),
    Route("DELETE", "/webhooks/{webhook_id}?tenant_id=acme", "scoped", ok=404),
    Route("POST", "/webhooks/{webhook_id}/rotate-secret?tenant_id=acme", "scoped", ok=404),
    Route("POST", "/webhooks/{webhook_id}/retry-failed?tenant_id=acme", "scoped", ok=404),
    Route("GET", "/providers?tenant_id=acme", "scoped"),
    Route("PUT", "/providers/{provider}?tenant_id=acme", "scoped", json={}, ok=404),
    Route("DELETE", "/providers/{provider}?tenant_id=acme", "scoped", ok=404),
    # Called by providers: no token; verified by their own signatures (unknown provider: 404).
    Route("POST", "/providers/{provider}/acme", "public", json={}, ok=404),
    Route("GET", "/instance", "admin"),
    Route("PUT", "/instance", "admin", json={"name": "renamed"}),
    Route("POST", "/instance/reload-bounce", "admin"),
    Route("GET", "/command-log", "admin"),
    Route("GET", "/command-log/export", "admin"),
]


def expected(route: Route, caller: str) -> tuple[int, Any]:
    """(status, detail) the caller must get; detail None means: a success body, not checked here."""
    if route.kind == "public":
        return route.ok, None
    if caller == "none":
        return 401, ADMIN_REQUIRED if route.kind == "admin" else INVALID
    if caller in ("bad", "expired"):
        return 401, INVALID
    if route.kind == "admin" and caller in ("own", "other"):
        return 403, ADMIN_ONLY
    if caller == "other" and route.other is not None:
        return route.other
    if route.kind == "scoped" and caller == "other":
        return 401, WRONG_TENANT
    return route.ok, None


async def _tokens(api: Api) -> dict[str, str | None]:
    own = await api.new_tenant("acme")
    other = await api.new_tenant("globex")
    await api.new_tenant("stale")
    r = await api.client.post(
        "/tenant/stale/api-key", json={"expires_at": int(time.time()) + 60}, headers=api.admin()
    )
    assert r.status_code == 200, r.text
    # A key past its expiry (creating one already expired is refused, issue 9).
    async with api.pool.acquire() as conn:
        await conn.execute(
            "UPDATE tenants SET api_key_expires_at = $1 WHERE id = 'stale'", int(time.time()) - 60
        )
    return {
        "none": None,
        "bad": "not-a-token-anyone-was-given-0123456789abc",
        "expired": r.json()["api_key"],
        "other": other,
        "own": own,
        "admin": api.admin_token,
    }


def test_every_documented_route_is_in_the_matrix() -> None:
    documented = {
        ("GET", "/health"),
        ("GET", "/status"),
        ("GET", "/metrics"),
        ("POST", "/commands/add-messages"),
        ("POST", "/commands/run-now"),
        ("POST", "/commands/suspend"),
        ("POST", "/commands/activate"),
        ("POST", "/commands/delete-messages"),
        ("POST", "/commands/cleanup-messages"),
        ("GET", "/messages"),
        ("POST", "/account"),
        ("GET", "/accounts"),
        ("DELETE", "/account/smtp1"),
        ("POST", "/tenant"),
        ("GET", "/tenants"),
        ("GET", "/tenants/sync-status"),
        ("GET", "/tenant/acme"),
        ("PUT", "/tenant/acme"),
        ("DELETE", "/tenant/acme"),
        ("POST", "/tenant/acme/api-key"),
        ("DELETE", "/tenant/acme/api-key"),
        ("GET", "/instance"),
        ("PUT", "/instance"),
        ("POST", "/instance/reload-bounce"),
        ("GET", "/command-log"),
        ("GET", "/command-log/export"),
    }
    covered = {(r.method, r.path.split("?")[0]) for r in ROUTES}
    assert documented <= covered, documented - covered


async def test_every_served_route_is_in_the_matrix(api: Api) -> None:
    """A route added to the app without an entry here would escape the authorization checks."""
    spec = (await api.client.get("/openapi.json")).json()
    served = {
        (
            method.upper(),
            path.replace("{tenant_id}", "acme")
            .replace("{account_id}", "smtp1")
            .replace("{address}", "x@example.org"),
        )
        for path, ops in spec["paths"].items()
        for method in ops
    }
    covered = {(r.method, r.path.split("?")[0]) for r in ROUTES}
    assert served <= covered, served - covered


@pytest.mark.parametrize("route", ROUTES, ids=str)
async def test_route_authorization(api: Api, route: Route) -> None:
    tokens = await _tokens(api)
    for caller in CALLERS:
        await api.new_account("acme")  # a previous caller may have deleted it
        value = tokens[caller]
        headers = token(value) if value else {}
        r = await api.client.request(route.method, route.path, json=route.json, headers=headers)
        status, detail = expected(route, caller)
        assert r.status_code == status, f"{caller}: {r.status_code} {r.text}"
        if detail is not None:
            assert r.json() == {"detail": detail}, caller


async def test_tenant_token_sees_only_its_own_messages(api: Api) -> None:
    own = await api.new_tenant("acme")
    other = await api.new_tenant("globex")
    await api.new_account("acme")
    await api.new_account("globex")
    r = await add_messages(api, [message("a1"), message("g1", tenant_id="globex")])
    assert r.json()["queued"] == 2, r.text

    # Without a tenant_id, a tenant token lists its own tenant.
    r = await api.client.get("/messages", headers=token(own))
    assert [m["id"] for m in r.json()["messages"]] == ["a1"]
    r = await api.client.get("/messages", headers=token(other))
    assert [m["id"] for m in r.json()["messages"]] == ["g1"]
    r = await api.client.get("/accounts", headers=token(other))
    assert [a["tenant_id"] for a in r.json()["accounts"]] == ["globex"]

    # Deleting another tenant's message id through one's own tenant removes nothing.
    r = await api.client.post(
        "/commands/delete-messages", json={"ids": ["a1"]}, headers=token(other)
    )
    assert r.json() == {"ok": True, "removed": 0, "not_found": ["a1"], "unauthorized": []}
    assert [m["id"] for m in (await list_messages(api))["messages"]] == ["a1"]


async def test_add_messages_for_another_tenant_is_rejected_and_not_stored(api: Api) -> None:
    own = await api.new_tenant("acme")
    await api.new_tenant("globex")
    await api.new_account("acme")
    await api.new_account("globex")

    r = await add_messages(api, [message("mine"), message("theirs", tenant_id="globex")], key=own)

    assert r.status_code == 200, r.text
    assert r.json() == {
        "ok": True,
        "queued": 1,
        "rejected": [{"id": "theirs", "reason": WRONG_TENANT}],
    }
    assert [m["id"] for m in (await list_messages(api, "acme"))["messages"]] == ["mine"]
    assert (await list_messages(api, "globex"))["messages"] == []


async def test_rotated_and_revoked_keys_stop_working_at_once(api: Api) -> None:
    first = await api.new_tenant("acme")
    r = await api.client.post("/tenant/acme/api-key", headers=api.admin())
    second = r.json()["api_key"]
    assert second != first
    assert len(second) == 43

    assert (await api.client.get("/status", headers=token(first))).status_code == 401
    assert (await api.client.get("/status", headers=token(second))).status_code == 200

    r = await api.client.delete("/tenant/acme/api-key", headers=api.admin())
    assert r.json() == {"ok": True}
    r = await api.client.get("/status", headers=token(second))
    assert r.status_code == 401
    assert r.json() == {"detail": INVALID}


async def test_run_now_with_a_tenant_token_forces_that_tenants_sync(api: Api, dsn: str) -> None:
    own = await api.new_tenant("acme")
    await api.new_tenant("globex")
    async with api.pool.acquire() as conn:
        await conn.execute(
            "UPDATE tenants SET last_sync_ts = 1e10, dnd_until = 99999999999, sync_retry_at = 5"
        )
    heard: list[str] = []
    listener = await asyncpg.connect(dsn)
    try:
        await listener.add_listener("mail_proxy_run_now", lambda *args: heard.append(args[3]))
        r = await api.client.post("/commands/run-now", headers=token(own))
        assert r.json() == {"ok": True}
        r = await api.client.post("/commands/run-now", headers=api.admin())
        assert r.json() == {"ok": True}
        for _ in range(100):  # notifications arrive asynchronously on this connection
            if len(heard) == 2:
                break
            await listener.execute("SELECT 1")
    finally:
        await listener.close()
    async with api.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, last_sync_ts, dnd_until, sync_retry_at FROM tenants ORDER BY id"
        )
    assert [tuple(row) for row in rows] == [
        ("acme", 0, None, None),
        ("globex", 1e10, 99999999999, 5),
    ]
    assert heard == ["acme", ""]


async def test_run_now_for_a_named_tenant(api: Api) -> None:
    own = await api.new_tenant("acme")
    await api.new_tenant("globex")
    async with api.pool.acquire() as conn:
        await conn.execute("UPDATE tenants SET last_sync_ts = 1e10, dnd_until = 99999999999")
    r = await api.client.post("/commands/run-now?tenant_id=globex", headers=api.admin())
    assert r.json() == {"ok": True}
    r = await api.client.post("/commands/run-now?tenant_id=globex", headers=token(own))
    assert r.status_code == 401
    assert r.json() == {"detail": "Token not authorized for this tenant"}
    r = await api.client.post("/commands/run-now?tenant_id=nobody", headers=api.admin())
    assert r.status_code == 404
    async with api.pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, last_sync_ts, dnd_until FROM tenants ORDER BY id")
    assert [tuple(row) for row in rows] == [("acme", 1e10, 99999999999), ("globex", 0, None)]
