"""`/webhooks`: create (secret shown once), list with failure state, change, rotate, delete;
tenant scope and bad input."""

from __future__ import annotations

from mail_proxy.event_types import WEBHOOK_EVENT_TYPES
from tests.integration.api.conftest import Api
from tests.integration.api.payloads import add_messages, message, tenant_with_account


async def test_a_tenant_manages_its_webhooks(api: Api) -> None:
    key = await tenant_with_account(api)
    me = {"X-API-Token": key}
    r = await api.client.post(
        "/webhooks",
        json={"id": "orders", "url": "https://hooks.example.org/mail", "event_types": ["sent"]},
        headers=me,
    )
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_")
    assert created["tenant_id"] == "acme"
    assert created["consecutive_failures"] == 0
    async with api.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT secret FROM webhooks WHERE id = 'orders'")
    assert stored.startswith("ENC:")

    r = await api.client.get("/webhooks", headers=me)
    assert r.status_code == 200
    [listed] = r.json()["webhooks"]
    assert "secret" not in listed
    assert created["secret"] not in r.text
    assert listed["event_types"] == ["sent"]

    r = await api.client.patch(
        "/webhooks/orders", json={"event_types": None, "active": False}, headers=me
    )
    assert r.status_code == 200
    assert r.json()["event_types"] is None
    assert r.json()["active"] is False

    r = await api.client.post(
        "/webhooks/orders/rotate-secret", json={"overlap_seconds": 60}, headers=me
    )
    assert r.status_code == 200
    rotated = r.json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != created["secret"]
    assert rotated["previous_secret_until"] is not None

    r = await api.client.post(
        "/webhooks", json={"id": "orders", "url": "https://x.example"}, headers=me
    )
    assert r.status_code == 409
    assert (await api.client.delete("/webhooks/orders", headers=me)).status_code == 200
    assert (await api.client.get("/webhooks/orders", headers=me)).status_code == 404


async def test_events_fan_out_to_matching_endpoints(api: Api) -> None:
    key = await tenant_with_account(api)
    me = {"X-API-Token": key}
    await api.client.post(
        "/webhooks", json={"id": "all", "url": "https://hooks.example.org/a"}, headers=me
    )
    await api.client.post(
        "/webhooks",
        json={"id": "bounces", "url": "https://hooks.example.org/b", "event_types": ["bounce"]},
        headers=me,
    )
    await add_messages(api, [message("ok"), message("bad", account_id="nope")])
    r = await api.client.get("/webhooks", headers=me)
    pending = {w["id"]: w["pending_deliveries"] for w in r.json()["webhooks"]}
    assert pending == {"all": 1, "bounces": 0}  # the rejection's `error` event


async def test_tenants_cannot_reach_each_other(api: Api) -> None:
    acme = await tenant_with_account(api, "acme")
    beta = await tenant_with_account(api, "beta")
    r = await api.client.post(
        "/webhooks", json={"id": "w", "url": "https://a.example/h"}, headers={"X-API-Token": acme}
    )
    assert r.status_code == 200
    beta_h = {"X-API-Token": beta}
    assert (await api.client.get("/webhooks/w", headers=beta_h)).status_code == 404
    assert (await api.client.get("/webhooks?tenant_id=acme", headers=beta_h)).status_code == 401
    assert (await api.client.delete("/webhooks/w", headers=beta_h)).status_code == 404
    r = await api.client.post(
        "/webhooks", json={"tenant_id": "acme", "url": "https://evil.example/h"}, headers=beta_h
    )
    assert r.status_code == 401
    # The admin names the tenant.
    r = await api.client.get("/webhooks", params={"tenant_id": "acme"}, headers=api.admin())
    assert [w["id"] for w in r.json()["webhooks"]] == ["w"]
    r = await api.client.post(
        "/webhooks", json={"tenant_id": "ghost", "url": "https://a.example/h"}, headers=api.admin()
    )
    assert r.status_code == 404


async def test_bad_input_is_refused_with_a_reason(api: Api) -> None:
    key = await tenant_with_account(api)
    me = {"X-API-Token": key}
    bad_bodies = [
        {"url": "ftp://example.org/x"},
        {"url": "not a url"},
        {"url": "https://user:pass@example.org/x"},
        {"url": "https://example.org/\r\nX-Injected: 1"},
        {"url": "https://example.org/" + "a" * 3000},
        {"url": "https://example.org/x", "event_types": ["SENT; DROP"]},
        {"url": "https://example.org/x", "id": "has space"},
        {"url": "https://example.org/x", "secret": "mine"},
        {"url": 42},
        {"url": "http://[::1"},
        {"url": "https://example.org:99999/x"},
        {"url": "javascript:alert(1)"},
        {"url": "https://example.org/\u2028x"},
        {"url": "https://example.org/x", "event_types": ["sent"] * 65},
    ]
    for body in bad_bodies:
        r = await api.client.post("/webhooks", json=body, headers=me)
        assert r.status_code == 422, (body, r.text)
        assert "detail" in r.json()
    r = await api.client.post(
        "/webhooks/none/rotate-secret", json={"overlap_seconds": -1}, headers=me
    )
    assert r.status_code == 422
    assert (await api.client.get("/webhooks", headers=me)).json()["webhooks"] == []


async def test_a_tenant_cannot_multiply_its_events_without_bound(api: Api) -> None:
    key = await tenant_with_account(api)
    me = {"X-API-Token": key}
    for i in range(20):
        body = {"id": f"w{i}", "url": "https://hooks.example.org/x"}
        assert (await api.client.post("/webhooks", json=body, headers=me)).status_code == 200
    r = await api.client.post("/webhooks", json={"url": "https://hooks.example.org/x"}, headers=me)
    assert r.status_code == 409
    assert "at most 20" in r.json()["detail"]


async def test_event_types_are_the_ones_the_service_emits(api: Api) -> None:
    """An unknown name would be stored and never fire: refused on create and on change (422),
    naming it and listing the valid ones, whatever its shape."""
    key = await tenant_with_account(api)
    me = {"X-API-Token": key}
    r = await api.client.post(
        "/webhooks",
        json={"id": "w", "url": "https://example.org/x", "event_types": list(WEBHOOK_EVENT_TYPES)},
        headers=me,
    )
    assert r.status_code == 200, r.text
    for bad in ("nonsense", "Sent", "pec_", "pec_**", "SENT; DROP", "queued", "", "x" * 500):
        for method, path in (("POST", "/webhooks"), ("PATCH", "/webhooks/w")):
            body = {"event_types": ["sent", bad]}
            if method == "POST":
                body["url"] = "https://example.org/y"
            r = await api.client.request(method, path, json=body, headers=me)
            assert r.status_code == 422, (bad, r.text)
            text = str(r.json()["detail"])
            if len(bad) <= 64:
                assert f"unknown event type {bad!r}" in text, text
                assert "recipient_refused" in text, text
                assert "pec_*" in text, text
    # An empty list would never fire either (null is "every event").
    r = await api.client.patch("/webhooks/w", json={"event_types": []}, headers=me)
    assert r.status_code == 422, r.text
    r = await api.client.post(
        "/webhooks", json={"url": "https://example.org/z", "event_types": []}, headers=me
    )
    assert r.status_code == 422, r.text
    [stored] = (await api.client.get("/webhooks", headers=me)).json()["webhooks"]
    assert stored["event_types"] == list(WEBHOOK_EVENT_TYPES)
