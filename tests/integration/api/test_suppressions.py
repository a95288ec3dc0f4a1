"""`/suppressions` and intake: a suppressed recipient is refused, per tenant, until removed."""

from __future__ import annotations

from typing import Any

from mail_proxy.db.bounces import Bounce, SuppressionPolicy, record_bounce
from tests.integration.api.conftest import Api
from tests.integration.api.payloads import (
    add_messages,
    list_messages,
    message,
    tenant_with_account,
    token,
)


async def _suppress(api: Api, address: str, tenant_id: str = "acme", **extra: Any) -> Any:
    return await api.client.post(
        "/suppressions",
        json={"tenant_id": tenant_id, "address": address, **extra},
        headers=api.admin(),
    )


async def _list(api: Api, key: str | None = None, **params: Any) -> Any:
    headers = token(key) if key else api.admin()
    return await api.client.get("/suppressions", params=params, headers=headers)


async def test_manual_add_list_and_remove(api: Api) -> None:
    await tenant_with_account(api)
    r = await _suppress(api, "Someone <Some.One@Example.org>", reason="asked to stop")
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True, "added": True}
    assert (await _suppress(api, "some.one@example.org")).json()["added"] is False

    page = (await _list(api, tenant_id="acme")).json()
    assert [(s["address"], s["reason"], s["source"]) for s in page["suppressions"]] == [
        ("some.one@example.org", "asked to stop", "manual")
    ]
    r = await api.client.delete(
        "/suppressions/SOME.ONE@example.org", params={"tenant_id": "acme"}, headers=api.admin()
    )
    assert r.status_code == 200, r.text
    assert (await _list(api, tenant_id="acme")).json()["suppressions"] == []
    r = await api.client.delete(
        "/suppressions/some.one@example.org", params={"tenant_id": "acme"}, headers=api.admin()
    )
    assert r.status_code == 404
    assert "not suppressed" in r.json()["detail"]


async def test_pagination_walks_every_entry_once(api: Api) -> None:
    await tenant_with_account(api)
    for i in range(7):
        assert (await _suppress(api, f"u{i}@example.org")).status_code == 200
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"tenant_id": "acme", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await _list(api, **params)).json()
        seen += [s["address"] for s in page["suppressions"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert seen == sorted(f"u{i}@example.org" for i in range(7))


async def test_bad_input_is_a_clear_4xx(api: Api) -> None:
    await tenant_with_account(api)
    for address in ("not-an-address", "a@b.cd\r\nBcc: x@y.zz", "", "x" * 400 + "@example.org"):
        r = await _suppress(api, address)
        assert r.status_code == 422, (address, r.text)
        assert r.json()["detail"]
    r = await api.client.post("/suppressions", content=b"{", headers=api.admin())
    assert r.status_code == 422
    r = await _suppress(api, "a@example.org", tenant_id="nobody")
    assert r.status_code == 404
    r = await api.client.delete(
        "/suppressions/not an address", params={"tenant_id": "acme"}, headers=api.admin()
    )
    assert r.status_code == 400
    assert "invalid address" in r.json()["detail"]
    r = await _list(api)  # admin must name the tenant
    assert r.status_code == 400
    r = await _list(api, tenant_id="acme", limit=0)
    assert r.status_code == 422


async def test_a_tenant_sees_and_changes_only_its_own_list(api: Api) -> None:
    acme = await tenant_with_account(api, "acme")
    await tenant_with_account(api, "other")
    assert (await _suppress(api, "x@example.org", tenant_id="other")).status_code == 200

    r = await _list(api, acme)  # own tenant implied
    assert r.status_code == 200
    assert r.json()["suppressions"] == []
    r = await _list(api, acme, tenant_id="other")
    assert r.status_code == 401
    r = await api.client.post(
        "/suppressions",
        json={"tenant_id": "other", "address": "y@example.org"},
        headers=token(acme),
    )
    assert r.status_code == 401
    r = await api.client.delete(
        "/suppressions/x@example.org", params={"tenant_id": "other"}, headers=token(acme)
    )
    assert r.status_code == 401
    r = await api.client.post(
        "/suppressions", json={"address": "mine@example.org"}, headers=token(acme)
    )
    assert r.status_code == 200
    assert [s["address"] for s in (await _list(api, acme)).json()["suppressions"]] == [
        "mine@example.org"
    ]


async def test_intake_refuses_a_message_whose_every_recipient_is_suppressed(api: Api) -> None:
    await tenant_with_account(api, "acme")
    await tenant_with_account(api, "other")
    await _suppress(api, "gone@example.org")
    r = await add_messages(
        api, [message("m1", to=["Gone <GONE@example.org>"]), message("m2", to=["ok@example.org"])]
    )
    assert r.status_code == 200, r.text
    assert r.json()["queued"] == 1
    assert r.json()["rejected"] == [{"id": "m1", "reason": "recipient suppressed"}]
    stored = {m["id"]: m for m in (await list_messages(api, include_history="true"))["messages"]}
    assert stored["m1"]["status"] == "error"
    assert stored["m1"]["error"] == "recipient suppressed"
    assert [e["event_type"] for e in stored["m1"]["history"]] == ["error"]

    # The list is per tenant: the same address is fine for another tenant.
    r = await add_messages(api, [message("m1", tenant_id="other", to=["gone@example.org"])])
    assert r.json()["queued"] == 1, r.text

    # Alone in a request, the refusal is the reference's 400 shape.
    r = await add_messages(api, [message("m3", to=["gone@example.org"])])
    assert r.status_code == 400
    assert r.json()["detail"]["rejected"] == [{"id": "m3", "reason": "recipient suppressed"}]


async def test_suppressed_recipients_among_others_are_left_out(api: Api) -> None:
    await tenant_with_account(api)
    await _suppress(api, "gone@example.org")
    r = await add_messages(
        api, [message("m1", to=["ok@example.org"], cc=["gone@example.org"], bcc=["b@example.org"])]
    )
    assert r.json() == {"ok": True, "queued": 1, "rejected": []}, r.text
    stored = (await list_messages(api))["messages"][0]
    assert stored["status"] == "pending"
    assert stored["message"]["suppressed_recipients"] == ["gone@example.org"]


async def test_a_removed_entry_lets_messages_through_again(api: Api) -> None:
    await tenant_with_account(api)
    async with api.pool.acquire() as conn:
        recorded = await record_bounce(
            conn,
            bounce=Bounce(
                tenant_id="acme",
                address="Gone@Example.org",
                bounce_type="hard",
                code="511",
                reason="550 5.1.1 User unknown",
                event_ts=1,
                source="test",
            ),
            policy=SuppressionPolicy(),
        )
    assert recorded.suppressed
    entry = (await _list(api, tenant_id="acme")).json()["suppressions"][0]
    assert entry["source"] == "hard_bounce"
    assert entry["bounce_code"] == "511"
    assert entry["reason"] == "550 5.1.1 User unknown"
    r = await add_messages(api, [message("m1", to=["gone@example.org"])])
    assert r.status_code == 400
    await api.client.delete(
        "/suppressions/gone@example.org", params={"tenant_id": "acme"}, headers=api.admin()
    )
    r = await add_messages(api, [message("m2", to=["gone@example.org"])])
    assert r.json()["queued"] == 1, r.text


async def test_a_cursor_this_route_never_gave_is_400(api: Api) -> None:
    """Like `/messages`: an invalid cursor is named in a 400, never silently the first page."""
    await api.new_tenant("acme")
    for address in ("a@example.org", "b@example.org"):
        r = await api.client.post(
            "/suppressions", json={"tenant_id": "acme", "address": address}, headers=api.admin()
        )
        assert r.status_code == 200
    for bad in ("garbage", "A@EXAMPLE.ORG", " a@example.org", "a@example.org\x7f", "a b@x.org"):
        r = await api.client.get(
            "/suppressions", params={"tenant_id": "acme", "cursor": bad}, headers=api.admin()
        )
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["detail"] == f"invalid cursor: {bad!r}"
    r = await api.client.get(
        "/suppressions", params={"tenant_id": "acme", "limit": 1}, headers=api.admin()
    )
    cursor = r.json()["next_cursor"]
    r = await api.client.get(
        "/suppressions", params={"tenant_id": "acme", "cursor": cursor}, headers=api.admin()
    )
    assert [s["address"] for s in r.json()["suppressions"]] == ["b@example.org"]
