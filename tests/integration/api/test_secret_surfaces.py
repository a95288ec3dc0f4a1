"""Every place a stored secret could be echoed, one test each (issue 9): URL credentials in a
tenant's base URL and large-file storage URL, custom secret headers, attachment auth, provider
settings and webhook secrets never come back in a response or the command log; a client that
writes back what it was shown keeps what is stored."""

from __future__ import annotations

from typing import Any

from tests.integration.api.conftest import Api
from tests.integration.api.payloads import add_messages, message, tenant_with_account, token

URL_PASSWORD = "url-pass-Bn47"
URL_SIGNATURE = "sig-Wq93"
STORAGE_SECRET = "storage-secret-Lk28"
HEADER_KEY = "header-key-Tz61"
PROVIDER_SECRET = "provider-secret-Mv35"


async def _texts(api: Api, *paths: str) -> str:
    texts = []
    for path in paths:
        r = await api.client.get(path, headers=api.admin())
        assert r.status_code == 200, (path, r.text)
        texts.append(r.text)
    return "\n".join(texts)


async def _command_log(api: Api) -> str:
    return await _texts(api, "/command-log?limit=1000", "/command-log/export")


async def test_credentials_in_the_client_base_url_are_masked_and_kept(api: Api) -> None:
    url = f"https://app:{URL_PASSWORD}@app.example.org/hooks?sig={URL_SIGNATURE}"
    key = await api.new_tenant("acme", client_base_url=url)
    shown = await _texts(api, "/tenant/acme", "/tenants", "/tenants/sync-status")
    shown += (await api.client.get("/tenant/acme", headers=token(key))).text
    shown += await _command_log(api)
    assert URL_PASSWORD not in shown
    assert URL_SIGNATURE not in shown
    tenant = (await api.client.get("/tenant/acme", headers=api.admin())).json()
    assert tenant["client_base_url"] == ("https://********@app.example.org/hooks?sig=********")
    # Read, then write back what was shown: the stored URL stays whole.
    r = await api.client.put(
        "/tenant/acme", json={"client_base_url": tenant["client_base_url"]}, headers=token(key)
    )
    assert r.status_code == 200, r.text
    async with api.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT client_base_url FROM tenants WHERE id = 'acme'")
    assert stored == url


async def test_credentials_in_the_large_file_storage_url_are_masked_and_kept(api: Api) -> None:
    config: dict[str, Any] = {
        "enabled": True,
        "action": "rewrite",
        "storage_url": f"s3://AKIAEXAMPLE:{STORAGE_SECRET}@bucket/mail",
        "public_base_url": "https://mail.example.org",
    }
    await api.new_tenant("acme", large_file_config=config)
    shown = await _texts(api, "/tenant/acme", "/tenants") + await _command_log(api)
    assert STORAGE_SECRET not in shown
    tenant = (await api.client.get("/tenant/acme", headers=api.admin())).json()
    r = await api.client.put(
        "/tenant/acme",
        json={"large_file_config": tenant["large_file_config"]},
        headers=api.admin(),
    )
    assert r.status_code == 200, r.text
    async with api.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT large_file_config FROM tenants WHERE id = 'acme'")
    assert stored["storage_url"] == config["storage_url"]


async def test_secret_custom_headers_are_masked_in_messages_and_the_command_log(
    api: Api,
) -> None:
    await tenant_with_account(api)
    headers = {"X-Api-Key": HEADER_KEY, "Authorization": f"Bearer {HEADER_KEY}", "X-Tag": "ok"}
    r = await add_messages(api, [message("m1", headers=headers)])
    assert r.json()["queued"] == 1, r.text
    shown = await _texts(api, "/messages?tenant_id=acme&include_history=true")
    shown += await _command_log(api)
    assert HEADER_KEY not in shown
    [record] = (await api.client.get("/messages?tenant_id=acme", headers=api.admin())).json()[
        "messages"
    ]
    assert record["message"]["headers"]["X-Tag"] == "ok"  # the rest is shown as sent


async def test_attachment_auth_takes_only_the_client_auth_shape_and_never_echoes(
    api: Api,
) -> None:
    await tenant_with_account(api)
    attachment = {
        "filename": "a.pdf",
        "storage_path": "https://files.example.org/a.pdf",
        "auth": {"method": "bearer", "token": "t", "api_key": HEADER_KEY},
    }
    r = await add_messages(api, [message("m1", attachments=[attachment])])
    assert r.status_code == 422  # an unknown key would be stored unencrypted: refused
    assert HEADER_KEY not in r.text
    assert "api_key" in r.text  # the error names the key
    async with api.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM messages") == 0


async def test_provider_settings_never_come_back(api: Api) -> None:
    key = await api.new_tenant("acme")
    for provider, settings in (
        ("mailgun", {"signing_key": PROVIDER_SECRET}),
        ("postmark", {"user": "pm", "password": PROVIDER_SECRET, "token": PROVIDER_SECRET}),
    ):
        r = await api.client.put(
            f"/providers/{provider}",
            params={"tenant_id": "acme"},
            json=settings,
            headers=token(key),
        )
        assert r.status_code == 200, r.text
        assert PROVIDER_SECRET not in r.text
    listed = (await api.client.get("/providers?tenant_id=acme", headers=token(key))).text
    assert PROVIDER_SECRET not in listed + await _command_log(api)


async def test_webhook_secrets_are_shown_once_only(api: Api) -> None:
    key = await api.new_tenant("acme")
    r = await api.client.post(
        "/webhooks", json={"url": "https://hooks.example.org/x"}, headers=token(key)
    )
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    hook = r.json()["id"]
    rotated = await api.client.post(f"/webhooks/{hook}/rotate-secret", headers=token(key))
    assert rotated.status_code == 200, rotated.text
    shown = (await api.client.get("/webhooks", headers=token(key))).text
    shown += (await api.client.get(f"/webhooks/{hook}", headers=token(key))).text
    shown += await _command_log(api)
    assert secret not in shown
    assert rotated.json()["secret"] not in shown
