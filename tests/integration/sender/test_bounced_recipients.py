"""A bounce for one recipient of a multi-recipient message, end to end: sent through the
service to a real SMTP server, bounced by DSNs put in a real IMAP mailbox (Dovecot), read by
the sender's poller. The bounced recipient's outcome turns `refused`, the report item of a
multi-recipient message carries the `recipients` list (SPEC section 13), and a one-recipient
message's bounce item stays exactly v0.6."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mail_proxy.db.recipients import for_messages, wire_list
from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.dovecot import Dovecot, dovecot_server
from tests.integration.sender.inbound_helpers import INBOUND_FAST, instance_mailbox, quoted_headers
from tests.integration.sender.servers import HttpApp, SmtpSink, http_server, smtp_server
from tests.integration.sender.test_reporter import SYNC, answering, items
from tests.samples import bounces

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def imap() -> Iterator[Dovecot]:
    with dovecot_server(["rcpts"]) as server:
        yield server


async def _recipients(world: World, mail_id: str) -> list[dict[str, object]]:
    async with world.pool.acquire() as conn:
        pk = await conn.fetchval("SELECT pk FROM messages WHERE id = $1", mail_id)
        return wire_list((await for_messages(conn, message_pks=[pk])).get(pk, []))


async def test_the_bounced_recipient_is_named(world: World, imap: Dovecot) -> None:
    sink = SmtpSink()
    receiver = HttpApp({SYNC: answering()})
    async with smtp_server(sink) as port, http_server(receiver) as app:
        await world.tenant("acme", client_base_url=app.url)
        await world.account("acme", "smtp1", port)
        await instance_mailbox(world, imap, "rcpts")
        await world.enqueue(
            "acme",
            "smtp1",
            {
                "id": "MULTI",
                "to": ["ann@example.com", "Gone@Example.com"],
                "cc": ["Bob <bob@example.com>"],
            },
            {"id": "ONE", "to": ["solo@example.com"]},
        )
        async with running_sender(world, **INBOUND_FAST):

            async def sent() -> bool:
                states = await world.states("acme")
                return states.get("MULTI") == "sent" and states.get("ONE") == "sent"

            await eventually(sent)
            # Every recipient accepted at once: no outcome rows, items exactly v0.6.
            assert await _recipients(world, "MULTI") == []
            multi = quoted_headers(sink, "MULTI")
            # A warning first (Action: delayed): not a failure, nothing changes.
            imap.append("rcpts", bounces.delayed(multi, rcpt="ann@example.com"))
            imap.append("rcpts", bounces.postfix(multi, rcpt="gone@example.com"))
            imap.append(
                "rcpts", bounces.postfix(quoted_headers(sink, "ONE"), rcpt="solo@example.com")
            )
            # The same address bounced again later (another MTA's DSN): first reason kept.
            imap.append("rcpts", bounces.exim(multi, rcpt="gone@example.com"))

            async def reported() -> bool:
                return len([i for i in items(app) if "bounce_ts" in i]) >= 4

            await eventually(reported, timeout=60)

    bounce_items = [i for i in items(app) if "bounce_ts" in i]
    one = [i for i in bounce_items if i["id"] == "ONE"]
    assert len(one) == 1
    assert set(one[0]) == {"id", "bounce_ts", "bounce_type", "bounce_code", "bounce_reason"}
    warning, failed, again = [i for i in bounce_items if i["id"] == "MULTI"]
    assert "recipients" not in warning  # the warning changed no outcome
    assert warning["bounce_type"] == "soft"
    assert set(failed) == {
        "id",
        "bounce_ts",
        "bounce_type",
        "bounce_code",
        "bounce_reason",
        "recipients",
    }
    assert (failed["bounce_type"], failed["bounce_code"]) == ("hard", "511")
    by_address = {r["address"]: r for r in failed["recipients"]}
    assert set(by_address) == {"ann@example.com", "Gone@Example.com", "Bob <bob@example.com>"}
    assert by_address["ann@example.com"]["status"] == "accepted"
    assert by_address["Bob <bob@example.com>"]["status"] == "accepted"
    gone = by_address["Gone@Example.com"]
    assert (gone["status"], gone["code"]) == ("refused", 550)
    assert str(gone["reason"]).startswith("hard bounce: ")
    assert "User unknown" in str(gone["reason"])
    assert again["recipients"] == failed["recipients"]  # first reason kept
    # The stored outcomes, which GET /messages and the history show.
    assert await _recipients(world, "MULTI") == failed["recipients"]
    [solo] = await _recipients(world, "ONE")
    assert (solo["status"], solo["code"]) == ("refused", 550)
    # The message itself stays `sent` (reference section 10: a bounce changes no state).
    states = await world.states("acme")
    assert states == {"MULTI": "sent", "ONE": "sent"}
