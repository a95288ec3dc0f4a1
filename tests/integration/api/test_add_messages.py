"""`POST /commands/add-messages`: what is queued, what is rejected and why, what is stored."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.api.conftest import Api
from tests.integration.api.payloads import (
    add_messages,
    list_messages,
    message,
    tenant_with_account,
)


async def _stored(api: Api, msg_id: str) -> dict[str, Any]:
    records = (await list_messages(api, include_history="true"))["messages"]
    return next(m for m in records if m["id"] == msg_id)


async def test_a_valid_batch_is_queued_and_stored_as_sent(api: Api) -> None:
    await tenant_with_account(api)
    batch = [
        message("m1", cc="a@example.org, b@example.org", headers={"X-Campaign": "spring"}),
        message("m2", to="one@example.org, Two <two@example.org>", batch_code="NL-1"),
    ]
    r = await add_messages(api, batch)
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True, "queued": 2, "rejected": []}

    m1 = await _stored(api, "m1")
    assert m1["status"] == "pending"
    assert m1["tenant_id"] == "acme"
    assert m1["account_id"] == "smtp1"
    assert m1["message"]["cc"] == ["a@example.org", "b@example.org"]
    assert m1["message"]["headers"] == {"X-Campaign": "spring"}
    assert m1["message"]["id"] == "m1"
    assert m1["message"]["tenant_id"] == "acme"
    assert m1["message"]["priority"] == 2
    m2 = await _stored(api, "m2")
    assert m2["message"]["to"] == ["one@example.org", "Two <two@example.org>"]
    assert m2["batch_code"] == "NL-1"


async def test_from_addr_is_accepted_as_from(api: Api) -> None:
    await tenant_with_account(api)
    item = message("m1")
    item["from_addr"] = item.pop("from")
    r = await add_messages(api, [item])
    assert r.json()["queued"] == 1, r.text
    assert (await _stored(api, "m1"))["message"]["from"] == "sender@example.org"


async def test_more_than_the_limit_is_refused(api: Api) -> None:
    await tenant_with_account(api)
    r = await add_messages(api, [message(f"m{i}") for i in range(1001)])
    assert r.status_code == 400
    assert r.json() == {
        "detail": {"error": "Cannot enqueue more than 1000 messages at once", "rejected": []}
    }
    assert (await list_messages(api))["messages"] == []
    r = await add_messages(api, [message(f"m{i}") for i in range(1000)])
    assert r.json()["queued"] == 1000


async def test_more_recipients_than_the_limit_are_refused_before_any_is_checked(
    api: Api,
) -> None:
    await tenant_with_account(api)
    # 21 messages of 1000 recipients: over the request's 20,000 (GMP_MAX_RECIPIENTS_PER_BATCH).
    many = [f"r{i}@example.org" for i in range(1000)]
    r = await add_messages(api, [message(f"m{i}", to=many) for i in range(21)])
    assert r.status_code == 400
    assert r.json()["detail"]["error"] == (
        "Cannot enqueue more than 20000 recipients at once (21000 in this request)"
    )
    assert (await list_messages(api))["messages"] == []
    # One message over its own limit is refused alone; the rest of the batch goes on.
    r = await add_messages(api, [message("big", to=[*many, "one@example.org"]), message("ok")])
    assert r.json()["rejected"] == [
        {"id": "big", "reason": "too many recipients: 1001 (at most 1000)"}
    ]
    assert r.json()["queued"] == 1


# (fields changed on an otherwise valid message, exact reason of the rejection)
REJECTIONS: list[tuple[dict[str, Any], str]] = [
    ({"account_id": ""}, "missing account_id"),
    ({"from": ""}, "missing from"),
    ({"to": []}, "missing to"),
    ({"to": ""}, "missing to"),
    ({"to": [" ", ""]}, "missing to"),
    ({"subject": ""}, "missing subject"),
    ({"account_id": "nope"}, "account not found for tenant"),
    ({"to": ["not-an-address"]}, "invalid address in to: 'not-an-address'"),
    ({"cc": "ok@example.org, broken@"}, "invalid address in cc: 'broken@'"),
    ({"bcc": ["a@@example.org"]}, "invalid address in bcc: 'a@@example.org'"),
    ({"from": "Sender <no-at-sign>"}, "invalid address in from: 'Sender <no-at-sign>'"),
    ({"reply_to": "x@example..org"}, "invalid address in reply_to: 'x@example..org'"),
    ({"from": "a@example.org\r\nBcc: victim@example.org"}, "line break in from"),
    ({"from": "a@example.org\n"}, "line break in from"),
    ({"return_path": "b@example.org\r\n"}, "line break in return_path"),
    ({"to": ["Name\r\n<a@example.org>"]}, "line break in to"),
    ({"cc": ["ok@example.org", "X\n <b@example.org>"]}, "line break in cc"),
    ({"subject": "Hi\r\nBcc: victim@example.org"}, "line break in subject"),
    ({"message_id": "<x@y>\nBcc: v@example.org"}, "line break in message_id"),
    ({"headers": {"X-Note": "a\r\nBcc: v@example.org"}}, "line break in header 'X-Note'"),
    ({"headers": {"X-A\nBcc": "v"}}, "line break in header 'X-A\\nBcc'"),
    (
        {"attachments": [{"filename": "a\r\n.pdf", "storage_path": "base64:AAAA"}]},
        "line break in attachment filename",
    ),
    ({"subject": "A\x0bB\x0cC\x1fD\x7f"}, "control character in subject"),
    ({"message_id": "no-at-sign"}, "invalid message_id: 'no-at-sign'"),
]


@pytest.mark.parametrize(("change", "reason"), REJECTIONS, ids=[r for _, r in REJECTIONS])
async def test_a_bad_message_is_rejected_with_its_reason_and_stored_as_error(
    api: Api, change: dict[str, Any], reason: str
) -> None:
    await tenant_with_account(api)
    r = await add_messages(api, [message("bad", **change), message("good")])
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True, "queued": 1, "rejected": [{"id": "bad", "reason": reason}]}

    # Stored as an error with an unreported `error` event, so the sync protocol reports it.
    bad = await _stored(api, "bad")
    assert bad["status"] == "error"
    assert bad["error"] == reason
    assert [(e["event_type"], e["description"], e.get("reported_ts")) for e in bad["history"]] == [
        ("error", reason, None)
    ]
    assert (await _stored(api, "good"))["status"] == "pending"


async def test_only_rejections_means_400_with_the_list(api: Api) -> None:
    await tenant_with_account(api)
    r = await add_messages(api, [message("a", subject=""), message("b", account_id="nope")])
    assert r.status_code == 400
    assert r.json() == {
        "detail": {
            "error": None,
            "rejected": [
                {"id": "a", "reason": "missing subject"},
                {"id": "b", "reason": "account not found for tenant"},
            ],
        }
    }


async def test_a_message_without_id_is_rejected_and_not_stored(api: Api) -> None:
    await tenant_with_account(api)
    r = await add_messages(api, [message(""), message("ok")])
    assert r.json() == {
        "ok": True,
        "queued": 1,
        "rejected": [{"id": None, "reason": "missing id"}],
    }
    assert [m["id"] for m in (await list_messages(api))["messages"]] == ["ok"]


async def test_a_message_without_tenant_is_rejected_and_not_stored(api: Api) -> None:
    await tenant_with_account(api)
    r = await add_messages(api, [message("x", tenant_id=""), message("ok")])
    assert r.json() == {
        "ok": True,
        "queued": 1,
        "rejected": [{"id": "x", "reason": "missing tenant_id"}],
    }
    assert [m["id"] for m in (await list_messages(api))["messages"]] == ["ok"]


async def test_a_message_of_an_unknown_tenant_is_rejected(api: Api) -> None:
    await tenant_with_account(api)
    r = await add_messages(api, [message("x", tenant_id="nobody"), message("ok")])
    assert r.json()["rejected"] == [{"id": "x", "reason": "account not found for tenant"}]


# (priority given on the message, default_priority of the batch, stored priority)
PRIORITIES: list[tuple[Any, Any, int]] = [
    (0, None, 0),
    (1, None, 1),
    (3, None, 3),
    (9, None, 3),
    (-2, None, 0),
    ("immediate", None, 0),
    ("high", None, 1),
    ("medium", None, 2),
    ("LOW", None, 3),
    ("1", None, 1),
    ("urgent", None, 2),
    (None, None, 2),
    (None, "high", 1),
    (None, 0, 0),
    ("urgent", "low", 3),
    ("immediate", "low", 0),
]


@pytest.mark.parametrize(("given", "default", "stored"), PRIORITIES)
async def test_priorities_accept_ints_and_labels(
    api: Api, given: Any, default: Any, stored: int
) -> None:
    await tenant_with_account(api)
    item = message("m1") if given is None else message("m1", priority=given)
    r = await add_messages(api, [item], default_priority=default)
    assert r.json()["queued"] == 1, r.text
    record = await _stored(api, "m1")
    assert (record["priority"], record["message"]["priority"]) == (stored, stored)


async def test_resubmitting_an_unsent_id_replaces_it(api: Api) -> None:
    await tenant_with_account(api)
    await add_messages(api, [message("m1", subject="First", priority="low")])
    r = await add_messages(api, [message("m1", subject="Second", batch_code="B")])
    assert r.json() == {"ok": True, "queued": 1, "rejected": []}

    records = (await list_messages(api))["messages"]
    assert len(records) == 1
    assert records[0]["message"]["subject"] == "Second"
    assert records[0]["priority"] == 2
    assert records[0]["batch_code"] == "B"


@pytest.mark.parametrize("state", ["sent", "error", "sending"])
async def test_an_attempted_id_is_refused_as_already_sent(api: Api, state: str) -> None:
    await tenant_with_account(api)
    await add_messages(api, [message("m1", subject="Original")])
    async with api.pool.acquire() as conn:
        await conn.execute("UPDATE messages SET state = $1, smtp_ts = 1700000000", state)

    r = await add_messages(api, [message("m1", subject="Again"), message("m2")])
    assert r.status_code == 200, r.text
    assert r.json() == {
        "ok": True,
        "queued": 1,
        "rejected": [{"id": "m1", "reason": "already sent"}],
    }
    assert (await _stored(api, "m1"))["message"]["subject"] == "Original"

    # Only "already sent": not a failure of the request (reference: ok stays true).
    r = await add_messages(api, [message("m1")])
    assert r.status_code == 200
    assert r.json() == {
        "ok": True,
        "queued": 0,
        "rejected": [{"id": "m1", "reason": "already sent"}],
    }


async def test_a_rejected_resubmission_does_not_replace_a_pending_message(api: Api) -> None:
    await tenant_with_account(api)
    await add_messages(api, [message("m1", subject="Good")])
    r = await add_messages(api, [message("m1", subject="")])
    assert r.status_code == 400
    record = await _stored(api, "m1")
    assert (record["status"], record["message"]["subject"]) == ("pending", "Good")


async def test_a_duplicate_id_in_one_batch_keeps_the_last(api: Api) -> None:
    await tenant_with_account(api)
    r = await add_messages(
        api, [message("m1", subject="one"), message("m2"), message("m1", subject="two")]
    )
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == []
    records = (await list_messages(api))["messages"]
    assert sorted(m["id"] for m in records) == ["m1", "m2"]
    assert next(m for m in records if m["id"] == "m1")["message"]["subject"] == "two"


async def test_the_same_id_in_two_tenants_is_two_messages(api: Api) -> None:
    await tenant_with_account(api, "acme")
    await tenant_with_account(api, "globex")
    r = await add_messages(api, [message("m1"), message("m1", tenant_id="globex")])
    assert r.json()["queued"] == 2, r.text
    assert [m["id"] for m in (await list_messages(api, "globex"))["messages"]] == ["m1"]


async def test_deferred_ts_in_the_future_is_stored_as_deferred(api: Api) -> None:
    await tenant_with_account(api)
    await add_messages(
        api, [message("later", deferred_ts=4_000_000_000), message("past", deferred_ts=1)]
    )
    later = await _stored(api, "later")
    assert (later["status"], later["deferred_ts"]) == ("deferred", 4_000_000_000)
    assert (await _stored(api, "past"))["status"] == "pending"


async def test_enqueue_wakes_the_senders_and_is_logged(api: Api, dsn: str) -> None:
    import asyncpg

    await tenant_with_account(api)
    heard: list[str] = []
    listener = await asyncpg.connect(dsn)
    try:
        await listener.add_listener("mail_proxy_work", lambda *args: heard.append(args[2]))
        await add_messages(api, [message("m1"), message("m2")])
        for _ in range(100):
            if heard:
                break
            await listener.execute("SELECT 1")
    finally:
        await listener.close()
    assert heard == ["mail_proxy_work"]  # one wake-up per batch, not per message

    log = (await api.client.get("/command-log", headers=api.admin())).json()["commands"]
    entry = next(e for e in log if e["endpoint"] == "addMessages")
    assert entry["tenant_id"] == "acme"
    assert [m["id"] for m in entry["payload"]["messages"]] == ["m1", "m2"]


async def test_a_batch_keeps_its_order_for_fifo_delivery(api: Api) -> None:
    await tenant_with_account(api)
    ids = [f"m{n:03d}" for n in range(200, 0, -1)]  # not sorted by id on purpose
    r = await add_messages(api, [message(i) for i in ids])
    assert r.json()["queued"] == len(ids), r.text
    records = (await list_messages(api))["messages"]
    by_arrival = sorted(records, key=lambda m: int(m["pk"]))
    assert [m["id"] for m in by_arrival] == ids
