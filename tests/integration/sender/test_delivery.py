"""Lease -> send -> record: what lands on the SMTP server and in the database."""

from __future__ import annotations

import email
from email import policy

import pytest

from tests.integration.sender.conftest import World, counter, eventually, running_sender
from tests.integration.sender.servers import SmtpSink, smtp_server

pytestmark = pytest.mark.usefixtures("either_exchange")


async def test_message_is_delivered_with_its_headers_and_recorded(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme", name="Acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue(
            "acme",
            "smtp1",
            {
                "id": "m1",
                "from": "Sender <sender@example.org>",
                "to": ["a@example.org", "b@example.org"],
                "cc": ["c@example.org"],
                "bcc": ["hidden@example.org"],
                "reply_to": "reply@example.org",
                "return_path": "bounces@example.org",
                "subject": "Invoice",
                "body": "<p>Hello</p>",
                "content_type": "html",
                "headers": {"X-Campaign": "spring"},
            },
        )
        async with running_sender(world) as ctx:
            await eventually(lambda: _state_is(world, "m1", "sent"))
            assert (
                counter(
                    ctx,
                    "gmp_sent_total",
                    tenant_id="acme",
                    tenant_name="Acme",
                    account_id="smtp1",
                    account_name="smtp1",
                )
                == 1
            )

    [received] = sink.received
    assert received.mail_from == "bounces@example.org"
    assert sorted(received.rcpt_tos) == [
        "a@example.org",
        "b@example.org",
        "c@example.org",
        "hidden@example.org",
    ]
    msg = email.message_from_bytes(received.data, policy=policy.default)
    assert msg["To"] == "a@example.org, b@example.org"
    assert msg["Cc"] == "c@example.org"
    assert msg["Bcc"] is None
    assert b"hidden@example.org" not in received.data
    assert msg["Reply-To"] == "reply@example.org"
    assert msg["X-Campaign"] == "spring"
    assert msg["X-Genro-Mail-ID"] == "m1"
    assert msg["Date"] is not None
    assert msg["Message-ID"].endswith("@example.org>")
    assert msg.get_content_type() == "text/html"

    row = await world.message("acme", "m1")
    assert row["state"] == "sent"
    assert row["smtp_ts"] is not None
    assert row["lease_owner"] is None
    [event] = await world.events("acme", "m1")
    assert event["event_type"] == "sent"
    assert event["event_ts"] == row["smtp_ts"]


async def test_client_message_id_is_kept(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "m1", "message_id": "<mine@example.org>"})
        async with running_sender(world):
            await eventually(lambda: _state_is(world, "m1", "sent"))
    assert sink.received[0].headers["Message-ID"] == "<mine@example.org>"


async def test_generated_message_id_is_the_same_on_a_retry(world: World) -> None:
    sink = SmtpSink(reply="450 4.2.0 mailbox busy")
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(world, retry_delays_seconds=(1,), retry_jitter_ratio=0.0):
            await eventually(lambda: _state_is(world, "m1", "deferred"))
            sink.reply = None
            await eventually(lambda: _state_is(world, "m1", "sent"))
    assert len(sink.attempted) == 2
    assert len({r.headers["Message-ID"] for r in sink.attempted}) == 1
    row = await world.message("acme", "m1")
    assert row["attempts"] == 2


async def test_smtp_connection_is_reused_across_messages(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", *({"id": f"m{i}"} for i in range(40)))
        async with running_sender(world, smtp_connections_per_account=2):
            await eventually(lambda: _all_sent(world, 40))
    assert len(sink.received) == 40
    assert sink.connections <= 2


async def _state_is(world: World, message_id: str, state: str) -> bool:
    return (await world.message("acme", message_id))["state"] == state


async def _all_sent(world: World, count: int) -> bool:
    states = await world.states("acme")
    return len(states) == count and all(s == "sent" for s in states.values())
