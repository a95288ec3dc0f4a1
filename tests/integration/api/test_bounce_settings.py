"""Bounce mailboxes through the API: the instance's (v0.6 fields and ours), a tenant's own,
PEC accounts; passwords stored encrypted and never returned; bad values are 422."""

from __future__ import annotations

from typing import Any

import pytest

from mail_proxy.redact import MASK
from tests.integration.api.conftest import Api
from tests.integration.api.payloads import tenant_with_account

MAILBOX = {
    "imap_host": "imap.example.org",
    "imap_port": 993,
    "imap_user": "bounces",
    "imap_password": "imap-secret",
    "return_path": "bounces@example.org",
    "verp": True,
    "processed_action": "move",
    "processed_folder": "Done",
}


async def test_instance_bounce_settings_round_trip(api: Api) -> None:
    body = {
        "bounce_enabled": True,
        "bounce_imap_host": "imap.example.org",
        "bounce_imap_port": 143,
        "bounce_imap_user": "bounces",
        "bounce_imap_password": "imap-secret",
        "bounce_imap_ssl": False,
        "bounce_imap_starttls": True,
        "bounce_poll_interval": 30,
        "bounce_return_path": "bounces@example.org",
        "bounce_processed_action": "seen",
    }
    r = await api.client.put("/instance", json=body, headers=api.admin())
    assert r.status_code == 200, r.text
    info = (await api.client.get("/instance", headers=api.admin())).json()
    for key, value in body.items():
        if key != "bounce_imap_password":
            assert info[key] == value, key
    assert "imap-secret" not in r.text + str(info)
    stored = await api.pool.fetchval("SELECT bounce_imap_password FROM instance")
    assert stored.startswith("ENC:")
    assert api.box.decrypt(stored) == "imap-secret"
    r = await api.client.post("/instance/reload-bounce", headers=api.admin())
    assert r.json() == {"ok": True}


@pytest.mark.parametrize(
    "bad",
    [
        {"bounce_imap_host": "imap.example.org\r\nX: y"},
        {"bounce_imap_host": "has space"},
        {"bounce_imap_folder": "INBOX\r\nA001 LOGOUT"},
        {"bounce_return_path": "not an address"},
        {"bounce_return_path": "Name <a@example.org>"},
        {"bounce_processed_action": "delete"},
        {"bounce_poll_interval": 0},
        {"bounce_imap_port": 70000},
    ],
)
async def test_bad_instance_values_are_422(api: Api, bad: dict[str, Any]) -> None:
    r = await api.client.put("/instance", json=bad, headers=api.admin())
    assert r.status_code == 422, r.text


async def test_reload_bounce_refuses_an_enabled_mailbox_without_host(api: Api) -> None:
    await api.client.put("/instance", json={"bounce_enabled": True}, headers=api.admin())
    r = await api.client.post("/instance/reload-bounce", headers=api.admin())
    assert r.status_code == 400
    assert r.json() == {"detail": "Bounce enabled but imap_host not configured"}


async def test_a_tenant_bounce_mailbox_is_stored_sealed_and_shown_masked(api: Api) -> None:
    key = await tenant_with_account(api, "acme", bounce_config=MAILBOX)
    shown = (await api.client.get("/tenant/acme", headers={"X-API-Token": key})).json()
    assert shown["bounce_config"]["imap_password"] == MASK
    assert shown["bounce_config"]["imap_user"] == "bounces"
    stored = await api.pool.fetchval("SELECT bounce_config FROM tenants WHERE id = 'acme'")
    assert api.box.decrypt(stored["imap_password"]) == "imap-secret"
    # A masked password sent back keeps the stored one; other fields change.
    r = await api.client.put(
        "/tenant/acme",
        json={"bounce_config": {**shown["bounce_config"], "poll_interval": 5}},
        headers={"X-API-Token": key},
    )
    assert r.status_code == 200, r.text
    stored = await api.pool.fetchval("SELECT bounce_config FROM tenants WHERE id = 'acme'")
    assert stored["poll_interval"] == 5
    assert api.box.decrypt(stored["imap_password"]) == "imap-secret"
    log = await api.client.get("/command-log", headers=api.admin())
    assert "imap-secret" not in log.text


@pytest.mark.parametrize(
    "bad",
    [
        {"imap_host": None},
        {"verp": True, "return_path": None},
        {"processed_action": "move", "processed_folder": None},
        {"imap_folder": "a\nb"},
        {"unknown": 1},
        {"poll_interval": -1},
    ],
)
async def test_bad_tenant_mailboxes_are_422(api: Api, bad: dict[str, Any]) -> None:
    await tenant_with_account(api, "acme")
    r = await api.client.put(
        "/tenant/acme", json={"bounce_config": {**MAILBOX, **bad}}, headers=api.admin()
    )
    assert r.status_code == 422, r.text


async def test_pec_account_fields(api: Api) -> None:
    await api.new_tenant("acme")
    body = {
        "id": "pec1",
        "tenant_id": "acme",
        "host": "smtps.pec.example.it",
        "port": 465,
        "user": "me@pec.example.it",
        "password": "smtp-secret",
        "is_pec_account": True,
        "imap_host": "imaps.pec.example.it",
        "imap_starttls": False,
        "imap_processed_action": "seen",
    }
    r = await api.client.post("/account", json=body, headers=api.admin())
    assert r.status_code == 200, r.text
    [account] = (await api.client.get("/accounts?tenant_id=acme", headers=api.admin())).json()[
        "accounts"
    ]
    assert account["is_pec_account"] is True
    assert account["imap_host"] == "imaps.pec.example.it"
    assert account["imap_processed_action"] == "seen"
    assert "smtp-secret" not in str(account)
    r = await api.client.post(
        "/account",
        json={**body, "imap_processed_action": "move"},
        headers=api.admin(),
    )
    assert r.status_code == 422
