"""Every recipient accounted for, against a strict aiosmtpd server (issue 10 items 2-4)."""

from __future__ import annotations

import email
from email import policy
from typing import Any

import pytest

from mail_proxy.db.reports import PendingEvent
from mail_proxy_sender.reports.items import report_item
from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.servers import SmtpSink, smtp_server

pytestmark = pytest.mark.usefixtures("either_exchange")

RETRY_FAST = {"retry_delays_seconds": (1,), "retry_jitter_ratio": 0.0}


async def _state(world: World, message_id: str = "m1") -> str:
    return str((await world.message("acme", message_id))["state"])


async def _is(world: World, state: str, message_id: str = "m1") -> bool:
    return await _state(world, message_id) == state


async def _rows(world: World, message_id: str = "m1") -> dict[str, dict[str, Any]]:
    async with world.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT r.* FROM message_recipients r JOIN messages m ON m.pk = r.message_pk "
            "WHERE m.id = $1 ORDER BY r.address",
            message_id,
        )
    return {r["address"]: dict(r.items()) for r in rows}


async def _items(world: World, message_id: str = "m1") -> list[dict[str, Any]]:
    """The delivery-report items the app is sent for this message's events."""
    items = []
    for e in await world.events("acme", message_id):
        event = PendingEvent(
            e["id"],
            e["message_id"],
            e["event_type"],
            e["event_ts"],
            e["description"],
            e["metadata"],
        )
        item = report_item(event)
        assert item is not None
        items.append(item)
    return items


async def _setup(world: World, port: int) -> None:
    await world.tenant("acme")
    await world.account("acme", "smtp1", port)


async def test_a_refused_recipient_is_reported_and_the_others_get_the_message(
    world: World,
) -> None:
    sink = SmtpSink(rcpt_replies={"gone@example.org": "550 5.1.1 User unknown"})
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue(
            "acme", "smtp1", {"id": "m1", "to": ["ok1@example.org", "gone@example.org"]}
        )
        async with running_sender(world):
            await eventually(lambda: _is(world, "sent"))
    [received] = sink.received
    assert received.rcpt_tos == ["ok1@example.org"]
    rows = await _rows(world)
    assert rows["gone@example.org"]["status"] == "refused"
    assert rows["gone@example.org"]["code"] == 550
    assert rows["ok1@example.org"]["status"] == "accepted"
    [item] = await _items(world)
    assert set(item) == {"id", "sent_ts", "recipients"}
    assert item["recipients"] == [
        {"address": "ok1@example.org", "status": "accepted", "code": 250, "reason": None},
        {
            "address": "gone@example.org",
            "status": "refused",
            "code": 550,
            "reason": "550 5.1.1 User unknown",
        },
    ]


async def test_all_accepted_stays_the_v06_item_and_writes_no_rows(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1", "to": ["a@example.org", "b@example.org"]})
        async with running_sender(world):
            await eventually(lambda: _is(world, "sent"))
    [item] = await _items(world)
    assert set(item) == {"id", "sent_ts"}
    assert await _rows(world) == {}


async def test_452_too_many_recipients_sends_the_rest_in_further_transactions(
    world: World,
) -> None:
    sink = SmtpSink(max_recipients=3)
    to = [f"r{i}@example.org" for i in range(8)]
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1", "to": to})
        async with running_sender(world):
            await eventually(lambda: _is(world, "sent"))
    assert [r.rcpt_tos for r in sink.received] == [to[0:3], to[3:6], to[6:8]]
    assert sink.connections == 1  # one session, three transactions
    [item] = await _items(world)
    assert set(item) == {"id", "sent_ts"}


async def test_greylisted_recipient_is_retried_alone_and_the_account_keeps_sending(
    world: World,
) -> None:
    sink = SmtpSink(rcpt_replies={"grey@example.org": "451 4.7.1 Greylisted, try again later"})
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue(
            "acme",
            "smtp1",
            {"id": "m1", "to": ["ok2@example.org", "grey@example.org"]},
            *({"id": f"other{i}"} for i in range(3)),
        )
        async with running_sender(world, **RETRY_FAST):
            await eventually(lambda: _is(world, "deferred"))
            # The account is not backed off: its other messages leave at once.
            for i in range(3):
                await eventually(lambda i=i: _is(world, "sent", f"other{i}"))
            assert await world.fetchval("SELECT throttle_until FROM accounts") is None
            rows = await _rows(world)
            assert rows["grey@example.org"]["status"] == "deferred"
            assert rows["grey@example.org"]["next_attempt_ts"] is not None
            del sink.rcpt_replies["grey@example.org"]  # the greylist lets it through
            await eventually(lambda: _is(world, "sent"))
    m1 = [r for r in sink.received if r.mail_id == "m1"]
    assert [r.rcpt_tos for r in m1] == [["ok2@example.org"], ["grey@example.org"]]
    deferred, sent = await _items(world)
    assert deferred["deferred_reason"] == "grey@example.org: 451 4.7.1 Greylisted, try again later"
    assert deferred["recipients"][1] == {
        "address": "grey@example.org",
        "status": "deferred",
        "code": 451,
        "reason": "451 4.7.1 Greylisted, try again later",
    }
    assert set(sent) == {"id", "sent_ts"}  # everybody accepted in the end: a v0.6 item
    rows = await _rows(world)
    assert {a: r["status"] for a, r in rows.items()} == {
        "grey@example.org": "accepted",
        "ok2@example.org": "accepted",
    }
    assert rows["grey@example.org"]["attempts"] == 2


async def test_a_recipient_that_stays_deferred_ends_given_up_and_the_message_sent(
    world: World,
) -> None:
    sink = SmtpSink(rcpt_replies={"full@example.org": "452 4.2.2 Mailbox full"})
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue(
            "acme", "smtp1", {"id": "m1", "to": ["a@example.org", "full@example.org"]}
        )
        async with running_sender(world, max_retries=1, **RETRY_FAST):
            await eventually(lambda: _is(world, "sent"), timeout=30)
    rows = await _rows(world)
    # Given up: final (`refused`, code null: the server never refused it), saying why.
    assert (rows["full@example.org"]["status"], rows["full@example.org"]["code"]) == (
        "refused",
        None,
    )
    assert rows["full@example.org"]["next_attempt_ts"] is None
    # 452 4.2.2 (mailbox full) is that recipient's deferral, not "too many recipients".
    assert rows["full@example.org"]["reason"] == "Max retries (1) exceeded: 452 4.2.2 Mailbox full"
    assert [r.rcpt_tos for r in sink.received] == [["a@example.org"]]
    assert sink.rcpts_seen.count("full@example.org") == 2
    assert sink.rcpts_seen.count("a@example.org") == 1


async def test_every_recipient_refused_is_an_error_naming_each(world: World) -> None:
    sink = SmtpSink(
        rcpt_replies={
            "x@example.org": "550 5.1.1 No such user",
            "y@example.org": "553 5.1.3 Bad address",
        }
    )
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1", "to": ["x@example.org", "y@example.org"]})
        async with running_sender(world):
            await eventually(lambda: _is(world, "error"))
    row = await world.message("acme", "m1")
    assert "x@example.org: 550 5.1.1 No such user" in row["error"]
    assert "y@example.org: 553 5.1.3 Bad address" in row["error"]
    [item] = await _items(world)
    assert [r["status"] for r in item["recipients"]] == ["refused", "refused"]


async def test_recipients_are_deduplicated_on_the_normalised_address(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue(
            "acme",
            "smtp1",
            {
                "id": "m1",
                "to": ["ann@example.org", "Ann <ann@EXAMPLE.org>"],
                "cc": ["ann@Example.Org"],
                "bcc": ["ann@example.org", "bob@example.org"],
            },
        )
        async with running_sender(world):
            await eventually(lambda: _is(world, "sent"))
    assert sink.received[0].rcpt_tos == ["ann@example.org", "bob@example.org"]


async def test_idn_domains_go_as_a_labels_in_envelope_and_headers(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue(
            "acme",
            "smtp1",
            {
                "id": "m1",
                "from": "Bücher <news@bücher.example>",
                "to": ["info@bücher.example"],
                "reply_to": ["Sales <sales@example.org>", "support@example.org"],
            },
        )
        async with running_sender(world):
            await eventually(lambda: _is(world, "sent"))
    [received] = sink.received
    assert received.mail_from == "news@xn--bcher-kva.example"
    assert received.rcpt_tos == ["info@xn--bcher-kva.example"]
    assert not received.smtputf8
    msg = email.message_from_bytes(received.data, policy=policy.default)
    assert msg["To"] == "info@xn--bcher-kva.example"
    assert msg["From"].addresses[0].display_name == "Bücher"
    assert msg["Reply-To"] == "Sales <sales@example.org>, support@example.org"
    assert received.data.isascii()


async def test_utf8_local_part_goes_with_smtputf8_when_offered(world: World) -> None:
    sink = SmtpSink(smtputf8=True)
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1", "to": ["Jörg <jörg@example.org>"]})
        async with running_sender(world):
            await eventually(lambda: _is(world, "sent"))
    [received] = sink.received
    assert received.smtputf8
    assert received.rcpt_tos == ["jörg@example.org"]
    msg = email.message_from_string(received.data.decode("utf-8"), policy=policy.SMTPUTF8)
    assert msg["To"].addresses[0].username == "jörg"


async def test_utf8_local_part_without_smtputf8_is_refused_alone(world: World) -> None:
    sink = SmtpSink(smtputf8=False)
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue(
            "acme", "smtp1", {"id": "m1", "to": ["jörg@example.org", "ann@example.org"]}
        )
        await world.enqueue("acme", "smtp1", {"id": "m2", "to": ["jörg@example.org"]})
        async with running_sender(world):
            await eventually(lambda: _is(world, "sent"))
            await eventually(lambda: _is(world, "error", "m2"))
    [received] = sink.received
    assert received.rcpt_tos == ["ann@example.org"]
    assert b"j\xc3\xb6rg" not in received.data
    assert received.data.isascii()
    rows = await _rows(world)
    assert rows["jörg@example.org"]["status"] == "refused"
    assert rows["jörg@example.org"]["reason"] == (
        "recipient address needs SMTPUTF8, which the server does not offer"
    )
    assert "needs SMTPUTF8" in (await world.message("acme", "m2"))["error"]


async def test_421_mid_session_reconnects_without_blaming_the_message(world: World) -> None:
    for stage in ("mail", "rcpt", "data"):
        sink = SmtpSink(hangup_at=stage, hangups_left=1)
        async with smtp_server(sink) as port:
            await world.execute("DELETE FROM messages")
            await _setup(world, port)
            await world.enqueue("acme", "smtp1", {"id": "m1"}, {"id": "m2"})
            async with running_sender(world, smtp_connections_per_account=1):
                await eventually(lambda: _is(world, "sent"))
                await eventually(lambda: _is(world, "sent", "m2"))
        assert sorted(sink.mail_ids()) == ["m1", "m2"], stage
        assert sink.connections == 2, stage
        assert await world.fetchval("SELECT throttle_until FROM accounts") is None, stage
        kinds = [e["event_type"] for e in await world.events("acme", "m1")]
        assert kinds == ["sent"], stage


async def test_421_naming_a_connection_limit_at_connect_backs_the_account_off(
    world: World,
) -> None:
    sink = SmtpSink(hangup_at="connect", hangup_reply="421 4.7.0 Too many connections")
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(world, throttle_base_seconds=60):

            async def backed_off() -> bool:
                return await world.fetchval("SELECT throttle_until FROM accounts") is not None

            await eventually(backed_off)
            # Refused before MAIL: the message goes back untried, no attempt counted.
            await eventually(lambda: _is(world, "pending"))
    left = await world.fetchval("SELECT throttle_until - extract(epoch FROM now()) FROM accounts")
    assert 50 < left <= 60
    assert await world.fetchval("SELECT health FROM accounts") is None  # not an account fault
    assert (await world.message("acme", "m1"))["attempts"] == 0
