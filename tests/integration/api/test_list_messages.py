"""`GET /messages`: order, `limit`/`cursor` pagination, `status` filter, `include_history`."""

from __future__ import annotations

from mail_proxy.config import Settings
from mail_proxy.encryption import decode_key, generate_key
from tests.integration.api.conftest import Api, running_api
from tests.integration.api.payloads import (
    add_messages,
    list_messages,
    message,
    tenant_with_account,
)

# id -> priority, submitted in this order
SUBMITTED = [("l1", 3), ("m1", 2), ("i1", 0), ("m2", 2), ("h1", 1), ("l2", 3), ("i2", 0)]
# priority first, then arrival
EXPECTED_ORDER = ["i1", "i2", "h1", "m1", "m2", "l1", "l2"]


async def _submit(api: Api) -> None:
    await tenant_with_account(api)
    for msg_id, priority in SUBMITTED:  # one request each: arrival order is the request order
        r = await add_messages(api, [message(msg_id, priority=priority)])
        assert r.json()["queued"] == 1


async def test_messages_come_in_priority_then_arrival_order(api: Api) -> None:
    await _submit(api)
    page = await list_messages(api)
    assert [m["id"] for m in page["messages"]] == EXPECTED_ORDER
    assert "next_cursor" not in page


async def test_pages_follow_the_cursor_without_gaps_or_repeats(api: Api) -> None:
    await _submit(api)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = await list_messages(api, **params)
        pages += 1
        assert len(page["messages"]) <= 3
        seen += [m["id"] for m in page["messages"]]
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert seen == EXPECTED_ORDER
    assert pages == 3


async def test_an_exact_last_page_has_no_next_cursor(api: Api) -> None:
    await _submit(api)
    page = await list_messages(api, limit=7)
    assert len(page["messages"]) == 7
    assert "next_cursor" not in page


async def test_messages_added_behind_the_cursor_do_not_shift_the_pages(api: Api) -> None:
    await _submit(api)
    first = await list_messages(api, limit=4)
    # A new immediate message sorts before the cursor: the next page is unaffected.
    await add_messages(api, [message("i3", priority=0)])
    rest = await list_messages(api, cursor=first["next_cursor"])
    assert [m["id"] for m in first["messages"] + rest["messages"]] == EXPECTED_ORDER


async def test_the_default_page_size_comes_from_the_settings(dsn: str) -> None:
    settings = Settings(messages_page_size=2)
    async with running_api(dsn, settings=settings, key=decode_key(generate_key())) as api:
        await _submit(api)
        page = await list_messages(api)
        assert [m["id"] for m in page["messages"]] == EXPECTED_ORDER[:2]
        assert page["next_cursor"]


async def test_status_filter_and_active_only(api: Api) -> None:
    await _submit(api)
    await add_messages(api, [message("bad", to=["nope"])])
    async with api.pool.acquire() as conn:
        await conn.execute("UPDATE messages SET state = 'sent', smtp_ts = 1 WHERE id = 'h1'")
        await conn.execute(
            "UPDATE messages SET state = 'deferred', deferred_ts = 9999999999 WHERE id = 'l2'"
        )
        await conn.execute("UPDATE messages SET state = 'sending' WHERE id = 'm2'")

    async def ids(**params: object) -> list[str]:
        return [m["id"] for m in (await list_messages(api, **params))["messages"]]

    assert await ids(status="sent") == ["h1"]
    assert await ids(status="error") == ["bad"]
    assert await ids(status="deferred") == ["l2"]
    assert await ids(status="sending") == ["m2"]
    assert await ids(status="pending") == ["i1", "i2", "m1", "l1"]
    assert await ids(status="sent,error") == ["h1", "bad"]
    assert await ids(status="all") == await ids()
    assert await ids(active_only="true") == ["i1", "i2", "m1", "m2", "l1", "l2"]
    assert await ids(status="pending", limit=2) == ["i1", "i2"]


async def test_include_history_lists_events_in_order(api: Api) -> None:
    await tenant_with_account(api)
    await add_messages(api, [message("m1"), message("bad", to=["nope"])])
    async with api.pool.acquire() as conn:
        for kind, ts, reported, meta in [
            ("deferred", 100, 150, {"deferred_ts": 160, "retry_count": 1}),
            ("sent", 200, None, None),
        ]:
            await conn.execute(
                "INSERT INTO message_events (message_pk, tenant_id, message_id, event_type,"
                " event_ts, description, metadata, reported_ts)"
                " SELECT pk, tenant_id, id, $1, $2, $3, $4, $5 FROM messages WHERE id = 'm1'",
                kind,
                ts,
                f"{kind} note",
                meta,
                reported,
            )
    without = (await list_messages(api))["messages"]
    assert all("history" not in m for m in without)

    records = {m["id"]: m for m in (await list_messages(api, include_history="true"))["messages"]}
    history = records["m1"]["history"]
    assert [{k: v for k, v in e.items() if k != "event_id"} for e in history] == [
        {
            "event_type": "deferred",
            "event_ts": 100,
            "description": "deferred note",
            "metadata": {"deferred_ts": 160, "retry_count": 1},
            "reported_ts": 150,
        },
        {"event_type": "sent", "event_ts": 200, "description": "sent note"},
    ]
    assert history[0]["event_id"] < history[1]["event_id"]
    assert [e["event_type"] for e in records["bad"]["history"]] == ["error"]
