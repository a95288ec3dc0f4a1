"""`GET /messages/{id}/events`: one message's history, in order, tenant-scoped."""

from __future__ import annotations

import time

from mail_proxy.db.outcomes import Outcome, record_outcomes
from mail_proxy.db.recipients import RecipientRow
from mail_proxy.db.recipients import record as record_recipients
from tests.integration.api.conftest import Api
from tests.integration.api.payloads import add_messages, message, tenant_with_account


async def _outcome(api: Api, msg_id: str, outcome: Outcome) -> None:
    """Store an outcome the way a sender does: lease the row, then record."""
    async with api.pool.acquire() as conn, conn.transaction():
        pk = await conn.fetchval(
            "UPDATE messages SET state = 'sending', lease_owner = 't', "
            "lease_until = now() + interval '1 minute' WHERE id = $1 RETURNING pk",
            msg_id,
        )
        await record_outcomes(
            conn, outcomes=[Outcome(**{**vars(outcome), "message_pk": pk})], owner="t"
        )


async def test_history_lists_every_event_in_order(api: Api) -> None:
    key = await tenant_with_account(api)
    assert (await add_messages(api, [message("m1")])).status_code == 200
    now = int(time.time())
    await _outcome(
        api,
        "m1",
        Outcome(
            0,
            "deferred",
            now,
            deferred_ts=now + 60,
            error="451 4.7.1 greylisted",
            metadata={"deferred_ts": now + 60},
        ),
    )
    await _outcome(api, "m1", Outcome(0, "sent", now + 61, sent_at=now + 61.0))
    async with api.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO message_events (message_pk, tenant_id, message_id, event_type, "
            "event_ts, description, metadata) SELECT pk, tenant_id, id, 'bounce', $1, "
            '\'550 5.1.1 User unknown\', \'{"bounce_type": "hard", "bounce_code": "511"}\' '
            "FROM messages WHERE id = 'm1'",
            now + 100,
        )

    r = await api.client.get("/messages/m1/events", headers={"X-API-Token": key})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "m1"
    assert body["tenant_id"] == "acme"
    assert body["state"] == "sent"
    kinds = [e["event_type"] for e in body["events"]]
    assert kinds == ["queued", "deferred", "sent", "bounce"]
    queued, deferred, sent, bounce = body["events"]
    assert queued["event_id"] is None
    assert abs(queued["event_ts"] - now) < 5
    assert deferred["description"] == "451 4.7.1 greylisted"
    assert deferred["metadata"] == {"deferred_ts": now + 60}
    assert sent["event_ts"] == now + 61
    assert bounce["metadata"]["bounce_type"] == "hard"
    # The admin reads it too, naming the tenant.
    r = await api.client.get(
        "/messages/m1/events", params={"tenant_id": "acme"}, headers=api.admin()
    )
    assert r.status_code == 200
    assert r.json() == body


async def test_history_shows_each_recipients_outcome(api: Api) -> None:
    await tenant_with_account(api)
    await add_messages(api, [message("m1", to=["ok@example.org", "gone@example.org"])])
    async with api.pool.acquire() as conn:
        pk = await conn.fetchval("SELECT pk FROM messages WHERE id = 'm1'")
        await record_recipients(
            conn,
            rows=[
                RecipientRow(pk, "ok@example.org", "accepted", 250, None, 1),
                RecipientRow(pk, "gone@example.org", "refused", 550, "5.1.1 no such user", 1),
            ],
            now=time.time(),
        )
    r = await api.client.get(
        "/messages/m1/events", params={"tenant_id": "acme"}, headers=api.admin()
    )
    assert r.status_code == 200
    # In envelope order, as the delivery report lists them.
    assert r.json()["recipients"] == [
        {"address": "ok@example.org", "status": "accepted", "code": 250, "reason": None},
        {
            "address": "gone@example.org",
            "status": "refused",
            "code": 550,
            "reason": "5.1.1 no such user",
        },
    ]


async def test_a_rejected_message_shows_its_error(api: Api) -> None:
    await tenant_with_account(api)
    await add_messages(api, [message("m1"), message("bad", account_id="nope")])
    r = await api.client.get(
        "/messages/bad/events", params={"tenant_id": "acme"}, headers=api.admin()
    )
    assert r.status_code == 200
    events = r.json()["events"]
    assert [e["event_type"] for e in events] == ["queued", "error"]
    assert events[1]["description"] == "account not found for tenant"


async def test_another_tenants_message_is_not_found(api: Api) -> None:
    await tenant_with_account(api, "acme")
    beta = await tenant_with_account(api, "beta")
    await add_messages(api, [message("secret-1", tenant_id="acme")])
    # beta's token: its own tenant has no such message (404), acme's is out of reach (401).
    r = await api.client.get("/messages/secret-1/events", headers={"X-API-Token": beta})
    assert r.status_code == 404
    assert r.json() == {"detail": "Message 'secret-1' not found"}
    r = await api.client.get(
        "/messages/secret-1/events", params={"tenant_id": "acme"}, headers={"X-API-Token": beta}
    )
    assert r.status_code == 401
    r = await api.client.get(
        "/messages/secret-1/events", params={"tenant_id": "beta"}, headers=api.admin()
    )
    assert r.status_code == 404


async def test_odd_ids_are_answered_cleanly(api: Api) -> None:
    key = await tenant_with_account(api)
    for odd in ("a%2Fb", "x" * 5000, "caf%C3%A9", "..%2F..%2Fetc"):
        r = await api.client.get(f"/messages/{odd}/events", headers={"X-API-Token": key})
        assert r.status_code == 404, (odd, r.status_code, r.text)
        assert "detail" in r.json()
    # A NUL cannot be stored in Postgres text: a clear 4xx, on this route and every other.
    for path in (
        "/messages/%00/events?tenant_id=acme",
        "/messages?tenant_id=%00",
        "/webhooks?tenant_id=a%00",
    ):
        r = await api.client.get(path, headers=api.admin())
        assert r.status_code in (400, 422), (path, r.status_code, r.text)
        assert "NUL" in r.json()["detail"]
