"""No secret ever leaves the service: not in a response, not in the command log, not in plain
text in the database; and no secret is stored when there is no key to encrypt it with.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mail_proxy.tokens import hash_token
from tests.integration.api.conftest import Api, running_api
from tests.integration.api.payloads import add_messages, message, token

SMTP_PASSWORD = "smtp-pass-Zq81"
IMAP_PASSWORD = "imap-pass-Kw27"
BEARER_TOKEN = "client-bearer-Vx55"
BASIC_PASSWORD = "client-basic-Jm64"
BOUNCE_PASSWORD = "bounce-pass-Hy39"
ATTACHMENT_TOKEN = "attachment-bearer-Qp12"
NEW_ADMIN_TOKEN = "replacement-admin-token-Rt73"


async def _store_every_kind_of_secret(api: Api) -> dict[str, str]:
    """Write each secret through the API; returns the tenant keys handed out."""
    admin = api.admin()
    r = await api.client.post(
        "/tenant",
        json={
            "id": "acme",
            "client_base_url": "http://127.0.0.1:9",
            "client_auth": {"method": "bearer", "token": BEARER_TOKEN},
        },
        headers=admin,
    )
    acme_key = r.json()["api_key"]
    r = await api.client.post(
        "/tenant",
        json={"id": "globex", "client_auth": {"method": "none"}},
        headers=admin,
    )
    globex_key = r.json()["api_key"]
    r = await api.client.put(
        "/tenant/globex",
        json={"client_auth": {"method": "basic", "user": "u", "password": BASIC_PASSWORD}},
        headers=token(globex_key),
    )
    assert r.status_code == 200, r.text
    account = {
        "id": "smtp1",
        "tenant_id": "acme",
        "host": "127.0.0.1",
        "port": 2525,
        "user": "mailer",
        "password": SMTP_PASSWORD,
        "is_pec_account": True,
        "imap_host": "127.0.0.1",
        "imap_user": "pec",
        "imap_password": IMAP_PASSWORD,
    }
    r = await api.client.post("/account", json=account, headers=admin)
    assert r.status_code == 200, r.text
    r = await api.client.put(
        "/instance",
        json={
            "bounce_enabled": True,
            "bounce_imap_host": "127.0.0.1",
            "bounce_imap_password": BOUNCE_PASSWORD,
        },
        headers=admin,
    )
    assert r.status_code == 200, r.text
    attachment = {
        "filename": "a.pdf",
        "storage_path": "https://files.example.org/a.pdf",
        "auth": {"method": "bearer", "token": ATTACHMENT_TOKEN},
    }
    r = await add_messages(api, [message("m1", attachments=[attachment])])
    assert r.json()["queued"] == 1, r.text
    # A validation error echoes its input: the password in it must be masked too.
    r = await api.client.post("/account", json={**account, "port": "nope"}, headers=admin)
    assert r.status_code == 422
    return {"acme": acme_key, "globex": globex_key}


async def _every_readable_response(api: Api, admin_token: str) -> dict[str, str]:
    admin = token(admin_token)
    reads = {
        "tenants": await api.client.get("/tenants", headers=admin),
        "tenant": await api.client.get("/tenant/acme", headers=admin),
        "tenant_globex": await api.client.get("/tenant/globex", headers=admin),
        "accounts": await api.client.get("/accounts?tenant_id=acme", headers=admin),
        "messages": await api.client.get(
            "/messages?tenant_id=acme&include_history=true", headers=admin
        ),
        "instance": await api.client.get("/instance", headers=admin),
        "sync_status": await api.client.get("/tenants/sync-status", headers=admin),
        "status": await api.client.get("/status", headers=admin),
        "metrics": await api.client.get("/metrics"),
        "command_log": await api.client.get("/command-log?limit=1000", headers=admin),
        "export": await api.client.get("/command-log/export", headers=admin),
        "bad_account": await api.client.post(
            "/account",
            json={"id": "x", "tenant_id": "acme", "host": "h", "password": SMTP_PASSWORD},
            headers=admin,
        ),
    }
    for name, r in reads.items():
        assert r.status_code in (200, 422), (name, r.text)
    return {name: r.text for name, r in reads.items()}


async def test_no_secret_in_any_response_or_the_command_log(api: Api) -> None:
    keys = await _store_every_kind_of_secret(api)
    r = await api.client.put("/instance", json={"api_token": NEW_ADMIN_TOKEN}, headers=api.admin())
    assert r.status_code == 200, r.text

    texts = await _every_readable_response(api, NEW_ADMIN_TOKEN)

    secrets = [
        SMTP_PASSWORD,
        IMAP_PASSWORD,
        BEARER_TOKEN,
        BASIC_PASSWORD,
        BOUNCE_PASSWORD,
        ATTACHMENT_TOKEN,
        NEW_ADMIN_TOKEN,
        api.admin_token,
        keys["acme"],
        keys["globex"],
        hash_token(keys["acme"]),
        hash_token(keys["globex"]),
        hash_token(NEW_ADMIN_TOKEN),
        hash_token(api.admin_token),
    ]
    leaks = [(name, s) for name, text in texts.items() for s in secrets if s in text]
    assert leaks == [], leaks
    # The command log recorded the writes (with the secrets masked, not dropped silently).
    logged = {entry["endpoint"] for entry in json.loads(texts["command_log"])["commands"]}
    assert {"addTenant", "updateTenant", "addAccount", "updateInstance", "addMessages"} <= logged


async def test_masked_fields_show_that_a_secret_is_set(api: Api) -> None:
    await _store_every_kind_of_secret(api)
    tenant = (await api.client.get("/tenant/acme", headers=api.admin())).json()
    assert tenant["client_auth"] == {"method": "bearer", "token": "********"}
    log = (await api.client.get("/command-log", headers=api.admin())).json()["commands"]
    added = next(e for e in log if e["endpoint"] == "addAccount")
    assert added["payload"]["password"] == "********"
    assert added["payload"]["imap_password"] == "********"
    assert added["payload"]["user"] == "mailer"


async def test_put_with_the_mask_keeps_the_stored_secret(api: Api) -> None:
    await _store_every_kind_of_secret(api)
    tenant = (await api.client.get("/tenant/acme", headers=api.admin())).json()
    # A client that reads the tenant and writes it back must not replace its token by the mask.
    r = await api.client.put(
        "/tenant/acme", json={"client_auth": tenant["client_auth"]}, headers=api.admin()
    )
    assert r.status_code == 200, r.text
    async with api.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT client_auth FROM tenants WHERE id = 'acme'")
    assert api.box.decrypt(stored["token"]) == BEARER_TOKEN


async def test_secrets_are_stored_encrypted(api: Api) -> None:
    await _store_every_kind_of_secret(api)
    async with api.pool.acquire() as conn:
        account = await conn.fetchrow("SELECT password, imap_password FROM accounts")
        auths = dict(await conn.fetch("SELECT id, client_auth FROM tenants ORDER BY id"))
        bounce = await conn.fetchval("SELECT bounce_imap_password FROM instance")
        payload = await conn.fetchval("SELECT payload FROM messages WHERE id = 'm1'")
        dump = await conn.fetchval(
            "SELECT string_agg(t::text, ' ') FROM ("
            " SELECT row_to_json(a)::text AS t FROM accounts a"
            " UNION ALL SELECT row_to_json(n)::text FROM tenants n"
            " UNION ALL SELECT row_to_json(i)::text FROM instance i"
            " UNION ALL SELECT row_to_json(c)::text FROM command_log c"
            " UNION ALL SELECT row_to_json(m)::text FROM messages m) rows"
        )
    stored = {
        SMTP_PASSWORD: account["password"],
        IMAP_PASSWORD: account["imap_password"],
        BEARER_TOKEN: auths["acme"]["token"],
        BASIC_PASSWORD: auths["globex"]["password"],
        BOUNCE_PASSWORD: bounce,
        ATTACHMENT_TOKEN: payload["attachments"][0]["auth"]["token"],
    }
    for plain, value in stored.items():
        assert value.startswith("ENC:")
        assert api.box.decrypt(value) == plain
    for plain in (*stored, NEW_ADMIN_TOKEN):
        assert plain not in dump
    assert auths["globex"]["user"] == "u"  # only the secret parts are sealed


SECRET_WRITES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "POST",
        "/account",
        {"id": "s", "tenant_id": "acme", "host": "h.example.org", "port": 25, "password": "p"},
    ),
    (
        "POST",
        "/account",
        {
            "id": "s",
            "tenant_id": "acme",
            "host": "h.example.org",
            "port": 25,
            "imap_host": "i.example.org",
            "imap_password": "p",
        },
    ),
    ("POST", "/tenant", {"id": "beta", "client_auth": {"method": "bearer", "token": "t"}}),
    (
        "PUT",
        "/tenant/acme",
        {"client_auth": {"method": "basic", "user": "u", "password": "p"}},
    ),
    ("PUT", "/instance", {"bounce_imap_password": "p"}),
]


@pytest.mark.parametrize(("method", "path", "body"), SECRET_WRITES, ids=lambda v: str(v)[:40])
async def test_a_secret_without_a_key_is_refused(
    dsn: str, method: str, path: str, body: dict[str, Any]
) -> None:
    async with running_api(dsn, key=None) as api:
        await api.new_tenant("acme")
        r = await api.client.request(method, path, json=body, headers=api.admin())
        assert r.status_code == 400, r.text
        assert "no encryption key configured" in r.json()["detail"]
        async with api.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM accounts") == 0
            assert await conn.fetchval("SELECT count(*) FROM tenants") == 1
            assert await conn.fetchval("SELECT bounce_imap_password FROM instance") is None
            assert await conn.fetchval("SELECT client_auth FROM tenants") is None


async def test_without_a_key_secret_less_objects_still_work(dsn: str) -> None:
    async with running_api(dsn, key=None) as api:
        await api.new_tenant("acme", client_auth={"method": "none"})
        await api.new_account("acme", user="mailer")
        r = await add_messages(api, [message("m1")])
        assert r.json() == {"ok": True, "queued": 1, "rejected": []}
        r = await api.client.get("/accounts?tenant_id=acme", headers=api.admin())
        assert r.json()["accounts"][0]["user"] == "mailer"
