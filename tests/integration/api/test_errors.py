"""Bad input never yields a 500: 400/404 business errors with the reference's strings, 409 for
rows owned by Kubernetes, 413 beyond the size limit, 422 for schema errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mail_proxy.config import Settings
from mail_proxy.encryption import decode_key, generate_key
from tests.integration.api.conftest import Api, running_api
from tests.integration.api.payloads import add_messages, message, tenant_with_account

NOT_FOUND = "Tenant 'nope' not found"

# (method, path, body, status, detail)
BUSINESS_ERRORS: list[tuple[str, str, Any, int, str]] = [
    ("GET", "/tenant/nope", None, 404, NOT_FOUND),
    ("PUT", "/tenant/nope", {"name": "x"}, 404, NOT_FOUND),
    ("DELETE", "/tenant/nope", None, 404, NOT_FOUND),
    ("POST", "/tenant/nope/api-key", None, 404, NOT_FOUND),
    ("DELETE", "/tenant/nope/api-key", None, 404, NOT_FOUND),
    ("POST", "/account", {"id": "a", "tenant_id": "nope", "host": "h", "port": 25}, 404, NOT_FOUND),
    ("POST", "/commands/suspend?tenant_id=", None, 400, "tenant_id is required"),
    ("POST", "/commands/activate?tenant_id=", None, 400, "tenant_id is required"),
    ("POST", "/commands/suspend?tenant_id=nope", None, 400, "tenant not found"),
    (
        "POST",
        "/commands/activate?tenant_id=nope",
        None,
        400,
        "tenant not found or cannot activate single batch from full suspension",
    ),
    ("POST", "/commands/delete-messages", {"ids": []}, 400, "tenant_id is required"),
    ("POST", "/commands/cleanup-messages", {}, 400, "tenant_id is required"),
    ("GET", "/messages", None, 400, "tenant_id is required"),
    ("GET", "/accounts", None, 400, "tenant_id is required"),
    (
        "DELETE",
        "/account/nope?tenant_id=acme",
        None,
        400,
        "account not found or not owned by tenant",
    ),
    ("GET", "/messages?tenant_id=acme&cursor=garbage", None, 400, "invalid cursor: 'garbage'"),
    (
        "GET",
        "/messages?tenant_id=acme&status=lost",
        None,
        400,
        "unknown status 'lost'; use one of pending, deferred, sending, sent, error, all",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "detail"),
    BUSINESS_ERRORS,
    ids=[f"{m} {p}" for m, p, *_ in BUSINESS_ERRORS],
)
async def test_business_errors(
    api: Api, method: str, path: str, body: Any, status: int, detail: str
) -> None:
    await api.new_tenant("acme")
    r = await api.client.request(method, path, json=body, headers=api.admin())
    assert (r.status_code, r.json()) == (status, {"detail": detail})


async def test_activating_one_batch_out_of_a_full_suspension_is_refused(api: Api) -> None:
    await api.new_tenant("acme")
    await api.client.post("/commands/suspend?tenant_id=acme", headers=api.admin())
    r = await api.client.post(
        "/commands/activate?tenant_id=acme&batch_code=B1", headers=api.admin()
    )
    assert r.status_code == 400
    assert r.json() == {
        "detail": "tenant not found or cannot activate single batch from full suspension"
    }


async def test_reload_bounce_needs_an_imap_host_when_enabled(api: Api) -> None:
    await api.client.put("/instance", json={"bounce_enabled": True}, headers=api.admin())
    r = await api.client.post("/instance/reload-bounce", headers=api.admin())
    assert (r.status_code, r.json()) == (
        400,
        {"detail": "Bounce enabled but imap_host not configured"},
    )
    await api.client.put(
        "/instance", json={"bounce_imap_host": "imap.example.org"}, headers=api.admin()
    )
    r = await api.client.post("/instance/reload-bounce", headers=api.admin())
    assert (r.status_code, r.json()) == (200, {"ok": True})


# (method, path, body) of REST changes to rows a Kubernetes resource manages.
MANAGED_CHANGES: list[tuple[str, str, Any, str]] = [
    ("POST", "/tenant", {"id": "acme", "name": "x"}, "tenant 'acme'"),
    ("PUT", "/tenant/acme", {"name": "x"}, "tenant 'acme'"),
    ("DELETE", "/tenant/acme", None, "tenant 'acme'"),
    ("POST", "/tenant/acme/api-key", None, "tenant 'acme'"),
    ("DELETE", "/tenant/acme/api-key", None, "tenant 'acme'"),
    (
        "POST",
        "/account",
        {"id": "smtp1", "tenant_id": "acme", "host": "h", "port": 25},
        "account 'smtp1'",
    ),
    ("DELETE", "/account/smtp1?tenant_id=acme", None, "account 'smtp1'"),
    ("PUT", "/instance", {"name": "x"}, "instance 'mail-proxy'"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "named"),
    MANAGED_CHANGES,
    ids=[f"{m} {p}" for m, p, *_ in MANAGED_CHANGES],
)
async def test_a_managed_row_refuses_rest_changes_naming_the_resource(
    api: Api, method: str, path: str, body: Any, named: str
) -> None:
    await tenant_with_account(api)
    owner = "Tenant/mail/acme"
    async with api.pool.acquire() as conn:
        await conn.execute("UPDATE tenants SET managed_by = $1", owner)
        await conn.execute("UPDATE accounts SET managed_by = $1", owner)
        await conn.execute("UPDATE instance SET managed_by = $1", owner)
        before = await conn.fetchval("SELECT row_to_json(t)::text FROM (SELECT * FROM tenants) t")
    r = await api.client.request(method, path, json=body, headers=api.admin())
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert named in detail
    assert owner in detail
    async with api.pool.acquire() as conn:
        after = await conn.fetchval("SELECT row_to_json(t)::text FROM (SELECT * FROM tenants) t")
        assert await conn.fetchval("SELECT count(*) FROM accounts") == 1
        assert await conn.fetchval("SELECT name FROM instance") == "mail-proxy"
    assert after == before


async def test_managed_rows_still_take_messages_and_suspension(api: Api) -> None:
    await tenant_with_account(api)
    async with api.pool.acquire() as conn:
        await conn.execute("UPDATE tenants SET managed_by = 'Tenant/mail/acme'")
        await conn.execute("UPDATE accounts SET managed_by = 'SmtpAccount/mail/smtp1'")
    r = await add_messages(api, [message("m1")])
    assert r.json()["queued"] == 1
    r = await api.client.post("/commands/suspend?tenant_id=acme", headers=api.admin())
    assert r.status_code == 200


@pytest.fixture
async def small_api(dsn: str) -> AsyncIterator[Api]:
    settings = Settings(max_request_bytes=2000)
    async with running_api(dsn, settings=settings, key=decode_key(generate_key())) as api:
        await tenant_with_account(api)
        yield api


def _big_batch() -> dict[str, Any]:
    return {"messages": [message(f"m{i}", body="x" * 500) for i in range(5)]}


async def test_a_body_over_the_limit_is_413_with_content_length(small_api: Api) -> None:
    r = await small_api.client.post(
        "/commands/add-messages", json=_big_batch(), headers=small_api.admin()
    )
    assert r.status_code == 413
    assert r.json() == {"detail": "request body larger than 2000 bytes"}


async def test_a_chunked_body_over_the_limit_is_413(small_api: Api) -> None:
    payload = json.dumps(_big_batch()).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 700):
            yield payload[start : start + 700]

    r = await small_api.client.post(
        "/commands/add-messages",
        content=chunks(),
        headers={**small_api.admin(), "Content-Type": "application/json"},
    )
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413, r.text
    assert r.json() == {"detail": "request body larger than 2000 bytes"}
    async with small_api.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM messages") == 0


async def test_a_body_under_the_limit_passes_chunked_or_not(small_api: Api) -> None:
    payload = json.dumps({"messages": [message("m1")]}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield payload[:50]
        yield payload[50:]

    headers = {**small_api.admin(), "Content-Type": "application/json"}
    r = await small_api.client.post("/commands/add-messages", content=chunks(), headers=headers)
    assert r.json()["queued"] == 1, r.text
    r = await small_api.client.post("/commands/add-messages", content=payload, headers=headers)
    assert r.json()["queued"] == 1, r.text


def _without(key: str) -> dict[str, Any]:
    item = message("m1")
    del item[key]
    return {"messages": [item]}


# (path, body, location of the error in pydantic's detail)
SCHEMA_ERRORS: list[tuple[str, Any, list[Any]]] = [
    ("/commands/add-messages", _without("subject"), ["body", "messages", 0, "subject"]),
    ("/commands/add-messages", _without("tenant_id"), ["body", "messages", 0, "tenant_id"]),
    ("/commands/add-messages", _without("account_id"), ["body", "messages", 0, "account_id"]),
    ("/commands/add-messages", _without("to"), ["body", "messages", 0, "to"]),
    ("/commands/add-messages", _without("from"), ["body", "messages", 0, "from"]),
    (
        "/commands/add-messages",
        {"messages": [message("m1", attachments=[{"filename": "a", "storage_path": "p", "x": 1}])]},
        ["body", "messages", 0, "attachments", 0, "x"],
    ),
    (
        "/commands/add-messages",
        {"messages": [message("m1", attachments=[{"filename": "a"}])]},
        ["body", "messages", 0, "attachments", 0, "storage_path"],
    ),
    (
        "/commands/add-messages",
        {"messages": [message("m1", batch_code="x" * 65)]},
        ["body", "messages", 0, "batch_code"],
    ),
    (
        "/commands/add-messages",
        {"messages": [message("m1", deferred_ts="soon")]},
        ["body", "messages", 0, "deferred_ts"],
    ),
    ("/commands/add-messages", {"messages": "m1"}, ["body", "messages"]),
    ("/commands/add-messages", {}, ["body", "messages"]),
    ("/tenant", {"id": "bad id!"}, ["body", "id"]),
    ("/tenant", {"id": "x" * 65}, ["body", "id"]),
    ("/tenant", {"id": "t", "client_auth": {"method": "bearer"}}, ["body", "client_auth"]),
    ("/tenant", {"id": "t", "client_auth": {"method": "magic"}}, ["body", "client_auth", "method"]),
    ("/tenant", {"id": "t", "client_base_url": "ftp://x"}, ["body", "client_base_url"]),
    ("/account", {"id": "a", "tenant_id": "acme", "host": "h"}, ["body", "port"]),
    ("/account", {"id": "a", "tenant_id": "acme", "host": "h", "port": 70000}, ["body", "port"]),
    (
        "/account",
        {"id": "a", "tenant_id": "acme", "host": "h", "port": 25, "limit_behavior": "drop"},
        ["body", "limit_behavior"],
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    SCHEMA_ERRORS,
    ids=[".".join(map(str, loc)) for *_, loc in SCHEMA_ERRORS],
)
async def test_schema_errors_are_422_with_pydantic_detail(
    api: Api, path: str, body: Any, loc: list[Any]
) -> None:
    await tenant_with_account(api)
    r = await api.client.post(path, json=body, headers=api.admin())
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert isinstance(errors, list)
    assert loc in [e["loc"][: len(loc)] for e in errors], errors
    async with api.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM messages") == 0


async def test_invalid_json_is_422(api: Api) -> None:
    r = await api.client.post(
        "/commands/add-messages",
        content=b'{"messages": [',
        headers={**api.admin(), "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "json_invalid"


ODD_BODIES: list[Any] = [None, [], "text", 42, {"messages": None}, {"messages": [None]}, {"id": {}}]
WRITES = [
    ("POST", "/commands/add-messages"),
    ("POST", "/commands/delete-messages?tenant_id=acme"),
    ("POST", "/commands/cleanup-messages?tenant_id=acme"),
    ("POST", "/account"),
    ("POST", "/tenant"),
    ("PUT", "/tenant/acme"),
    ("PUT", "/instance"),
    ("POST", "/tenant/acme/api-key"),
]


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m} {p}" for m, p in WRITES])
async def test_odd_bodies_never_yield_a_500(api: Api, method: str, path: str) -> None:
    await tenant_with_account(api)
    for body in ODD_BODIES:
        r = await api.client.request(method, path, json=body, headers=api.admin())
        assert r.status_code < 500, (body, r.status_code, r.text)
        assert "detail" in r.json() or r.status_code == 200, (body, r.text)


# JSON that Python's parser takes but Postgres' jsonb refuses: strict parsing makes it a 422.
NON_FINITE = ["NaN", "Infinity", "-Infinity"]
FREE_FORM_FIELDS = [
    ("POST", "/commands/add-messages", '{"messages": [%s]}'),
    ("POST", "/tenant", '{"id": "t2", "rate_limits": {"x": %s}}'),
    ("PUT", "/tenant/acme", '{"large_file_config": {"x": %s}}'),
]


@pytest.mark.parametrize("value", NON_FINITE)
async def test_non_finite_numbers_are_422_not_500(api: Api, value: str) -> None:
    await tenant_with_account(api)
    item = json.dumps(message("m1", headers={"X-Score": "PLACEHOLDER"}))
    for method, path, template in FREE_FORM_FIELDS:
        inner = item.replace('"PLACEHOLDER"', value) if "messages" in template else value
        r = await api.client.request(
            method,
            path,
            content=template % inner,
            headers={**api.admin(), "Content-Type": "application/json"},
        )
        assert r.status_code == 422, (path, r.text)
        assert r.json()["detail"][0]["type"] == "json_invalid"


async def test_huge_integers_in_free_form_fields_are_stored(api: Api) -> None:
    await tenant_with_account(api)
    item = json.dumps(message("m1", headers={"X-Big": "PLACEHOLDER"}))
    body = '{"messages": [' + item.replace('"PLACEHOLDER"', "18446744073709551615") + "]}"
    r = await api.client.post(
        "/commands/add-messages",
        content=body,
        headers={**api.admin(), "Content-Type": "application/json"},
    )
    assert r.json()["queued"] == 1, r.text
    r = await api.client.get("/messages?tenant_id=acme", headers=api.admin())
    assert r.json()["messages"][0]["message"]["headers"] == {"X-Big": 18446744073709551615}


@pytest.mark.parametrize("command", ["suspend", "activate"])
async def test_suspend_and_activate_without_tenant_id_are_validation_errors(
    api: Api, command: str
) -> None:
    # v0.6 declared `tenant_id` a required query parameter: clients see 422 (issue 10 item 7).
    r = await api.client.post(f"/commands/{command}", headers=api.admin())
    assert r.status_code == 422
    assert any(err["loc"][-1] == "tenant_id" for err in r.json()["detail"])
