"""`GET /messages` shows each recipient's fate; `GET /accounts` shows account health
(SPEC section 13, issue 10); text_body and reply_to lists are accepted at intake."""

from __future__ import annotations

import time

from mail_proxy.db import recipients as db_recipients
from mail_proxy.db.account_health import hold_account, mark_account_ok
from mail_proxy.db.recipients import RecipientRow
from tests.integration.api.conftest import Api
from tests.integration.api.payloads import add_messages, list_messages, message, tenant_with_account


async def test_messages_list_the_recipients_when_some_were_not_accepted(api: Api) -> None:
    await tenant_with_account(api)
    r = await add_messages(api, [message("m1"), message("m2")])
    assert r.json()["queued"] == 2
    async with api.pool.acquire() as conn:
        pk = await conn.fetchval("SELECT pk FROM messages WHERE id = 'm1'")
        pk2 = await conn.fetchval("SELECT pk FROM messages WHERE id = 'm2'")
        await db_recipients.record(
            conn,
            rows=[
                RecipientRow(pk, "a@example.org", "accepted", 250, None, 1),
                RecipientRow(pk, "b@example.org", "refused", 550, "550 5.1.1 User unknown", 1),
                RecipientRow(pk2, "c@example.org", "accepted", 250, None, 1),
            ],
            now=time.time(),
        )
    by_id = {m["id"]: m for m in (await list_messages(api))["messages"]}
    # GET /messages leaves out null fields of the record, never of a recipient: the same
    # items as the delivery report (`RecipientRow.wire()`).
    assert by_id["m1"]["recipients"] == [
        {"address": "a@example.org", "status": "accepted", "code": 250, "reason": None},
        {
            "address": "b@example.org",
            "status": "refused",
            "code": 550,
            "reason": "550 5.1.1 User unknown",
        },
    ]
    assert "recipients" not in by_id["m2"]  # everybody accepted: the v0.6 record


async def test_accounts_show_health_with_an_actionable_reason(api: Api) -> None:
    await tenant_with_account(api)
    r = await api.client.get("/accounts?tenant_id=acme", headers=api.admin())
    [account] = r.json()["accounts"]
    assert "health" not in account  # never tried yet
    async with api.pool.acquire() as conn:
        pk = await conn.fetchval("SELECT pk FROM accounts")
        await hold_account(
            conn,
            account_pk=pk,
            reason="certificate of relay:587 not trusted: set tls_verify false",
            now=time.time(),
            base_seconds=30,
            max_seconds=60,
        )
    [account] = (await api.client.get("/accounts?tenant_id=acme", headers=api.admin())).json()[
        "accounts"
    ]
    assert account["health"] == "unhealthy"
    assert account["health_reason"].startswith("certificate of relay:587 not trusted")
    assert account["health_checked_at"]
    metrics = (await api.client.get("/metrics")).text
    assert 'gmp_account_healthy{account_id="smtp1",tenant_id="acme"} 0.0' in metrics
    async with api.pool.acquire() as conn:
        assert await mark_account_ok(conn, account_pk=pk)
    [account] = (await api.client.get("/accounts?tenant_id=acme", headers=api.admin())).json()[
        "accounts"
    ]
    assert account["health"] == "ok"
    assert "health_reason" not in account


async def test_text_body_and_reply_to_lists_are_stored(api: Api) -> None:
    await tenant_with_account(api)
    r = await add_messages(
        api,
        [
            message(
                "m1",
                body="<p>Hi</p>",
                content_type="html",
                text_body="Hi",
                reply_to="Sales <sales@example.org>, support@example.org",
                to=["info@bücher.example", "Bücher <news@bücher.example>"],
            )
        ],
    )
    assert r.json() == {"ok": True, "queued": 1, "rejected": []}
    [stored] = (await list_messages(api))["messages"]
    assert stored["message"]["text_body"] == "Hi"
    assert stored["message"]["reply_to"] == ["Sales <sales@example.org>", "support@example.org"]
