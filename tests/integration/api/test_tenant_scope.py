"""A tenant token changes only what the tenant owns; configuration that cannot work is refused
naming the problem, never silently accepted (issue 9, items 5 and 7)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.api.conftest import Api
from tests.integration.api.payloads import tenant_with_account, token


@pytest.mark.parametrize(
    "change",
    [
        {"active": True},
        {"active": False},
        {"rate_limits": {"hourly": 10}},
        {"large_file_config": {"enabled": True}},
    ],
)
async def test_a_tenant_cannot_change_admin_owned_fields(api: Api, change: dict[str, Any]) -> None:
    key = await tenant_with_account(api)
    r = await api.client.put("/tenant/acme", json=change, headers=token(key))
    assert r.status_code == 403, r.text
    assert next(iter(change)) in r.json()["detail"]
    # what the tenant owns it may still change, and the admin may change everything
    r = await api.client.put("/tenant/acme", json={"name": "ACME"}, headers=token(key))
    assert r.status_code == 200, r.text
    r = await api.client.put("/tenant/acme", json=change, headers=api.admin())
    assert r.status_code == 200, r.text


async def test_a_deactivated_tenant_cannot_reactivate_itself(api: Api) -> None:
    key = await tenant_with_account(api)
    r = await api.client.put("/tenant/acme", json={"active": False}, headers=api.admin())
    assert r.status_code == 200
    for method, path, body in [
        ("PUT", "/tenant/acme", {"active": True}),
        ("GET", "/tenant/acme", None),
        ("GET", "/messages?tenant_id=acme", None),
    ]:
        r = await api.client.request(method, path, json=body, headers=token(key))
        assert r.status_code == 401, (path, r.text)
    r = await api.client.get("/tenant/acme", headers=api.admin())
    assert r.json()["active"] is False


@pytest.mark.parametrize(
    "limits",
    [
        {"hourly": -1},
        {"hourly": "lots"},
        {"weekly": 5},
        {"hourly": 2**40},
        [1, 2],
    ],
)
async def test_junk_rate_limits_are_refused(api: Api, limits: Any) -> None:
    await tenant_with_account(api)
    r = await api.client.put("/tenant/acme", json={"rate_limits": limits}, headers=api.admin())
    assert r.status_code == 422, r.text
    r = await api.client.post(
        "/tenant", json={"id": "t2", "rate_limits": limits}, headers=api.admin()
    )
    assert r.status_code == 422, r.text


async def test_an_api_key_expiring_in_the_past_is_refused_and_the_old_one_kept(api: Api) -> None:
    key = await tenant_with_account(api)
    r = await api.client.post(
        "/tenant/acme/api-key", json={"expires_at": int(time.time()) - 10}, headers=api.admin()
    )
    assert r.status_code == 400
    assert r.json()["detail"] == "expires_at is in the past"
    r = await api.client.get("/tenant/acme", headers=token(key))
    assert r.status_code == 200


async def test_put_instance_refuses_unknown_keys_naming_them(api: Api) -> None:
    r = await api.client.put(
        "/instance", json={"name": "x", "bounce_pol_interval": 5}, headers=api.admin()
    )
    assert r.status_code == 422
    assert "bounce_pol_interval" in r.text
    r = await api.client.get("/instance", headers=api.admin())
    assert r.json()["name"] != "x"


async def test_url_credentials_never_show_in_messages_or_the_command_log(api: Api) -> None:
    from tests.integration.api.payloads import add_messages, message

    await tenant_with_account(api)
    url = "https://alice:hunter2@files.example.org/a.pdf?X-Amz-Signature=s3cr3t"
    r = await add_messages(
        api, [message("m1", attachments=[{"filename": "a.pdf", "storage_path": url}])]
    )
    assert r.json()["queued"] == 1, r.text
    shown = [
        (await api.client.get("/messages?tenant_id=acme", headers=api.admin())).text,
        (await api.client.get("/command-log", headers=api.admin())).text,
        (await api.client.get("/command-log/export", headers=api.admin())).text,
    ]
    for text in shown:
        assert "hunter2" not in text
        assert "s3cr3t" not in text
    assert "files.example.org/a.pdf" in shown[0]
    async with api.pool.acquire() as conn:  # the sender still has the real URL
        stored = await conn.fetchval("SELECT payload::text FROM messages WHERE id = 'm1'")
    assert "hunter2" in stored


async def test_metrics_token_guards_metrics_and_gauges_are_cached(dsn: str) -> None:
    from mail_proxy.config import Settings
    from tests.integration.api.conftest import running_api

    settings = Settings(metrics_token="scrape-me", metrics_cache_seconds=3600)
    async with running_api(dsn, settings=settings) as api:
        assert (await api.client.get("/metrics")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await api.client.get("/metrics", headers=wrong)).status_code == 401
        # the admin token is not the scrape token either
        assert (await api.client.get("/metrics", headers=api.admin())).status_code == 401
        good = {"Authorization": "Bearer scrape-me"}
        r = await api.client.get("/metrics", headers=good)
        assert r.status_code == 200
        assert "gmp_pending_messages 0.0" in r.text
        await tenant_with_account(api)
        from tests.integration.api.payloads import add_messages, message

        await add_messages(api, [message("m1")])
        # cached: the scrape does not query Postgres again within metrics_cache_seconds
        r = await api.client.get("/metrics", headers=good)
        assert "gmp_pending_messages 0.0" in r.text
