"""Bounces end to end: sent through the service, bounced by a DSN put in a real IMAP mailbox
(Dovecot, by APPEND), read by the sender's poller, reported through the sync protocol."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.dovecot import Dovecot, dovecot_server
from tests.integration.sender.inbound_helpers import (
    INBOUND_FAST,
    bounce_events,
    envelope_sender,
    instance_mailbox,
    quoted_headers,
    tenant_mailbox,
)
from tests.integration.sender.servers import HttpApp, SmtpSink, http_server, smtp_server
from tests.integration.sender.test_reporter import SYNC, answering, items
from tests.samples import bounces

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def imap() -> Iterator[Dovecot]:
    users = ["bounces", "bounces2", "fmt", "tenantbox", "verpbox", "moved", "reload"]
    with dovecot_server(users) as server:
        yield server


async def _sent(world: World, tenant_id: str, *ids: str) -> bool:
    states = await world.states(tenant_id)
    return all(states.get(i) == "sent" for i in ids)


async def test_a_bounce_reaches_the_sync_endpoint_once_and_suppresses(
    world: World, imap: Dovecot
) -> None:
    sink = SmtpSink()
    receiver = HttpApp({SYNC: answering()})
    async with smtp_server(sink) as port, http_server(receiver) as app:
        await world.tenant("acme", client_base_url=app.url)
        await world.account("acme", "smtp1", port)
        await instance_mailbox(world, imap, "bounces", action="seen")
        await world.enqueue("acme", "smtp1", {"id": "INV-3", "to": ["gone@example.com"]})
        async with running_sender(world, **INBOUND_FAST):
            await eventually(lambda: _sent(world, "acme", "INV-3"))
            # DSNs reach the bounce mailbox: the envelope sender is the instance return path.
            assert envelope_sender(sink, "INV-3") == "bounces@example.net"
            imap.append("bounces", bounces.postfix(quoted_headers(sink, "INV-3")))
            imap.append("bounces", bounces.auto_reply())  # ignored

            async def reported() -> bool:
                return any("bounce_ts" in item for item in items(app))

            await eventually(reported, timeout=30)
        # A restart reads nothing twice.
        async with running_sender(world, **INBOUND_FAST):
            await eventually(lambda: _polled_twice(world, "instance"), timeout=30)

    bounce_items = [item for item in items(app) if "bounce_ts" in item]
    assert len(bounce_items) == 1
    [item] = bounce_items
    assert set(item) == {"id", "bounce_ts", "bounce_type", "bounce_code", "bounce_reason"}
    assert item["id"] == "INV-3"
    assert item["bounce_type"] == "hard"
    assert item["bounce_code"] == "511"
    assert "User unknown" in item["bounce_reason"]
    assert await world.fetchval(
        "SELECT reason FROM suppressions WHERE tenant_id = 'acme' AND address = 'gone@example.com'"
    )
    assert [flags for _, flags in imap.messages("bounces")] == ["\\Seen", "\\Seen"]
    assert (
        await world.fetchval("SELECT last_uid FROM inbound_mailboxes WHERE key = 'instance'") == 2
    )
    # GET /instance shows the reference's bounce_last_uid / bounce_uidvalidity.
    assert await world.fetchval("SELECT bounce_last_uid FROM instance") == 2


async def _polled_twice(world: World, key: str) -> bool:
    # A poll after the restart: last_poll_ts moves past the first run's.
    value = await world.fetchval(
        "SELECT last_poll_ts FROM inbound_mailboxes WHERE key = $1 AND owner IS NOT NULL", key
    )
    if value is None:
        return False
    first = getattr(_polled_twice, "first", None)
    if first is None:
        _polled_twice.first = value  # type: ignore[attr-defined]
        return False
    return bool(value > first + 1)


async def test_every_mta_format_is_correlated_to_its_message(world: World, imap: Dovecot) -> None:
    sink = SmtpSink()
    formats = sorted(bounces.FORMATS)
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await instance_mailbox(world, imap, "fmt")
        await world.enqueue(
            "acme",
            "smtp1",
            *({"id": f"m-{name}", "to": [f"{name}@example.com"]} for name in formats),
        )
        # One more message per format to other recipients, so a wrong match would show.
        await world.enqueue(
            "acme",
            "smtp1",
            *({"id": f"x-{name}", "to": [f"x{name}@example.com"]} for name in formats),
        )
        async with running_sender(world, **INBOUND_FAST):
            await eventually(lambda: _sent(world, "acme", *(f"m-{n}" for n in formats)))
            for i, name in enumerate(formats):
                original = quoted_headers(sink, f"m-{name}")
                if i % 3 == 1:  # some MTAs quote a few headers only: keep X-Genro-Mail-ID
                    original = "\r\n".join(
                        line
                        for line in original.split("\r\n")
                        if "Token" not in line and not line.startswith("Message-ID")
                    )
                imap.append("fmt", bounces.FORMATS[name](original, rcpt=f"{name}@example.com"))

            async def all_in() -> bool:
                return len(await bounce_events(world)) >= len(formats)

            await eventually(all_in, timeout=40)
    events = await bounce_events(world)
    assert sorted((e["message_id"], e["metadata"]["recipient"]) for e in events) == sorted(
        (f"m-{name}", f"{name}@example.com") for name in formats
    )
    for event in events:
        assert event["metadata"]["bounce_type"] == "hard"
        assert re.fullmatch(r"5\d\d+", event["metadata"]["bounce_code"]), event


async def test_the_same_id_in_two_tenants_lands_on_the_right_one(
    world: World, imap: Dovecot
) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        for tenant_id in ("alpha", "beta"):
            await world.tenant(tenant_id)
            await world.account(tenant_id, "smtp1", port)
        await instance_mailbox(world, imap, "bounces2")
        await world.enqueue("alpha", "smtp1", {"id": "INV-1", "to": ["a@example.com"]})
        await world.enqueue("beta", "smtp1", {"id": "INV-1", "to": ["b@example.com"]})
        async with running_sender(world, **INBOUND_FAST):
            await eventually(lambda: _sent(world, "alpha", "INV-1"))
            await eventually(lambda: _sent(world, "beta", "INV-1"))
            # With the token: beta's message.
            imap.append(
                "bounces2",
                bounces.gmail(quoted_headers(sink, "INV-1", "b@example.com"), rcpt="b@example.com"),
            )
            # Without the token (only X-Genro-Mail-ID quoted): the recipient tells them apart.
            imap.append(
                "bounces2",
                bounces.qmail(bounces.original_headers(mail_id="INV-1"), rcpt="a@example.com"),
            )

            async def both() -> bool:
                return len(await bounce_events(world)) == 2

            await eventually(both, timeout=30)
    events = await bounce_events(world)
    assert sorted((e["tenant_id"], e["metadata"]["recipient"]) for e in events) == [
        ("alpha", "a@example.com"),
        ("beta", "b@example.com"),
    ]


async def test_a_tenant_mailbox_with_verp_and_the_moved_folder(world: World, imap: Dovecot) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await tenant_mailbox(
            world,
            "acme",
            imap,
            "verpbox",
            return_path="bounce@acme.example",
            verp=True,
            processed_action="move",
            processed_folder="Processed Bounces",
        )
        await world.enqueue("acme", "smtp1", {"id": "v1", "to": ["nobody@example.com"]})
        async with running_sender(world, **INBOUND_FAST):
            await eventually(lambda: _sent(world, "acme", "v1"))
            verp = envelope_sender(sink, "v1")
            assert verp.startswith("bounce+")
            assert verp.endswith("@acme.example")
            # A DSN that quotes nothing of the original: only the VERP address names it.
            raw = bounces.sendmail_old("", rcpt="nobody@example.com").replace(
                b"To: <sender@example.org>", f"To: {verp}".encode()
            )
            imap.append("verpbox", raw)

            async def one() -> bool:
                return len(await bounce_events(world, "acme")) == 1

            await eventually(one, timeout=30)

            async def moved() -> bool:
                return not imap.messages("verpbox")

            await eventually(moved, timeout=10)
    [event] = await bounce_events(world, "acme")
    assert event["message_id"] == "v1"
    assert len(imap.messages("verpbox", "Processed Bounces")) == 1


async def test_reload_bounce_starts_a_poller_without_restart(world: World, imap: Dovecot) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await instance_mailbox(world, imap, "reload", enabled=False)
        await world.enqueue("acme", "smtp1", {"id": "r1", "to": ["gone@example.com"]})
        async with running_sender(world, **{**INBOUND_FAST, "inbound_refresh_seconds": 3600}):
            await eventually(lambda: _sent(world, "acme", "r1"))
            imap.append("reload", bounces.exim(quoted_headers(sink, "r1")))
            await world.execute("UPDATE instance SET bounce_enabled = true")
            await world.execute("SELECT pg_notify('mail_proxy_reload_bounce', '')")

            async def one() -> bool:
                return len(await bounce_events(world, "acme")) == 1

            await eventually(one, timeout=30)


async def test_a_tenant_mailbox_on_a_private_address_is_refused(
    world: World, imap: Dovecot
) -> None:
    await world.tenant("acme")
    await tenant_mailbox(world, "acme", imap, "tenantbox")
    imap.append("tenantbox", bounces.postfix(bounces.original_headers()))
    async with running_sender(world, **INBOUND_FAST, outbound_allow=()):

        async def refused() -> bool:
            error = await world.fetchval(
                "SELECT last_error FROM inbound_mailboxes WHERE key = 'tenant:acme'"
            )
            return bool(error and "GMP_OUTBOUND_ALLOW" in error)

        await eventually(refused, timeout=20)
    # Nothing was read from it.
    assert await world.fetchval("SELECT last_uid FROM inbound_mailboxes") == 0
    assert [flags for _, flags in imap.messages("tenantbox")] == ["\\Recent"]
