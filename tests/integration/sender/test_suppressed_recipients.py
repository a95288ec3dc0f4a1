"""A partly suppressed message accounts for every recipient, end to end: API intake, a real
sender, aiosmtpd and a real sync receiver (SPEC section 13; issue 11)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.api.conftest import running_api
from tests.integration.api.payloads import add_messages, list_messages, message
from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.servers import HttpApp, SmtpSink, http_server, smtp_server
from tests.integration.sender.test_reporter import SYNC, answering, items

pytestmark = pytest.mark.usefixtures("either_exchange")

GONE = {"address": "gone@example.org", "status": "refused", "code": None}
GONE_REASON = "recipient suppressed"


async def _suppress(client: Any, headers: dict[str, str], address: str) -> None:
    r = await client.post(
        "/suppressions", json={"tenant_id": "acme", "address": address}, headers=headers
    )
    assert r.status_code in (200, 201), r.text


async def _rows(world: World, message_id: str) -> dict[str, tuple[str, str | None]]:
    async with world.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT r.address, r.status, r.reason FROM message_recipients r "
            "JOIN messages m ON m.pk = r.message_pk WHERE m.id = $1",
            message_id,
        )
    return {r["address"]: (r["status"], r["reason"]) for r in rows}


async def test_suppressed_recipients_are_refused_rows_reported_and_listed(world: World) -> None:
    sink = SmtpSink(rcpt_replies={"bad@example.org": "550 5.1.1 User unknown"})
    receiver = HttpApp({SYNC: answering()})
    async with (
        smtp_server(sink) as port,
        http_server(receiver) as app,
        running_api(world.dsn) as api,
    ):
        await world.tenant("acme", client_base_url=app.url)
        await world.account("acme", "smtp1", port)
        await _suppress(api.client, api.admin(), "Gone@Example.org")
        r = await add_messages(
            api,
            [
                # Some suppressed, the others accepted: sent, with every recipient listed.
                message("m1", to=["ok@example.org"], cc=["gone@example.org"]),
                # Suppressed and the only other one refused by the server: an error.
                message("m2", to=["bad@example.org", "gone@example.org"]),
            ],
        )
        assert r.json() == {"ok": True, "queued": 2, "rejected": []}, r.text
        # Written at intake: GET /messages lists them before any attempt.
        listed = {m["id"]: m for m in (await list_messages(api))["messages"]}
        assert listed["m1"]["status"] == "pending"
        [gone] = listed["m1"]["recipients"]
        assert (gone["address"], gone["status"], gone["reason"]) == (
            "gone@example.org",
            "refused",
            GONE_REASON,
        )
        assert await _rows(world, "m1") == {"gone@example.org": ("refused", GONE_REASON)}

        async with running_sender(world):

            async def reported() -> bool:
                return {i["id"] for i in items(app)} >= {"m1", "m2"}

            await eventually(reported)
        listed = {m["id"]: m for m in (await list_messages(api))["messages"]}

    assert [r.rcpt_tos for r in sink.received] == [["ok@example.org"]]
    assert "gone@example.org" not in sink.rcpts_seen
    by_id = {i["id"]: i for i in items(app)}
    assert set(by_id["m1"]) == {"id", "sent_ts", "recipients"}
    assert by_id["m1"]["recipients"] == [
        {"address": "ok@example.org", "status": "accepted", "code": 250, "reason": None},
        {**GONE, "reason": GONE_REASON},
    ]
    assert "error" in by_id["m2"]
    assert "sent_ts" not in by_id["m2"]
    statuses = {r["address"]: r["status"] for r in by_id["m2"]["recipients"]}
    assert statuses == {"bad@example.org": "refused", "gone@example.org": "refused"}
    assert listed["m1"]["status"] == "sent"
    assert listed["m2"]["status"] == "error"
    assert {r["address"] for r in listed["m1"]["recipients"]} == {
        "ok@example.org",
        "gone@example.org",
    }


async def test_a_replaced_message_decides_its_suppressed_recipients_again(world: World) -> None:
    async with running_api(world.dsn) as api:
        await world.tenant("acme")
        await world.account("acme", "smtp1", 2525)
        await _suppress(api.client, api.admin(), "gone@example.org")
        await add_messages(api, [message("m1", to=["ok@example.org", "gone@example.org"])])
        assert await _rows(world, "m1") == {"gone@example.org": ("refused", GONE_REASON)}
        # Lifted from the list, then the unsent message is submitted again: nobody left out.
        r = await api.client.delete(
            "/suppressions/gone@example.org",
            params={"tenant_id": "acme"},
            headers=api.admin(),
        )
        assert r.status_code in (200, 204), r.text
        await add_messages(api, [message("m1", to=["ok@example.org", "gone@example.org"])])
        assert await _rows(world, "m1") == {}
        stored = (await list_messages(api))["messages"][0]
        assert not stored.get("recipients")
        assert "suppressed_recipients" not in stored["message"]


async def test_a_client_cannot_mark_recipients_suppressed_itself(world: World) -> None:
    async with running_api(world.dsn) as api:
        await world.tenant("acme")
        await world.account("acme", "smtp1", 2525)
        extra = {"suppressed_recipients": ["ok@example.org", *(f"x{i}@e.org" for i in range(500))]}
        r = await add_messages(api, [message("m1", to=["ok@example.org"], **extra)])
        assert r.json()["queued"] == 1, r.text
        assert await _rows(world, "m1") == {}
        stored = (await list_messages(api))["messages"][0]
        assert "suppressed_recipients" not in stored["message"]


async def test_a_suppressed_address_in_other_case_is_one_refused_recipient(world: World) -> None:
    # Suppression lists match whatever the case; the recipient is listed once, as submitted.
    sink = SmtpSink()
    async with smtp_server(sink) as port, running_api(world.dsn) as api:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await _suppress(api.client, api.admin(), "Sup@Example.ORG")
        r = await add_messages(api, [message("m1", to=["SUP@example.org", "ok@example.org"])])
        assert r.json() == {"ok": True, "queued": 1, "rejected": []}, r.text
        async with running_sender(world):

            async def sent() -> bool:
                state = await world.fetchval("SELECT state FROM messages WHERE id = 'm1'")
                return bool(state == "sent")

            await eventually(sent)
        [listed] = (await list_messages(api))["messages"]
    assert [r.rcpt_tos for r in sink.received] == [["ok@example.org"]]
    assert [(x["address"], x["status"]) for x in listed["recipients"]] == [
        ("SUP@example.org", "refused"),
        ("ok@example.org", "accepted"),
    ]
