"""PEC end to end: messages sent through a PEC account, receipts put in its real IMAP mailbox
(Dovecot), read by the sender's poller and reported as pec_* items; both timeouts."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email import policy

import pytest

from mail_proxy.db.recipients import for_messages, wire_list
from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.dovecot import PASSWORD, Dovecot, dovecot_server
from tests.integration.sender.inbound_helpers import INBOUND_FAST
from tests.integration.sender.servers import HttpApp, SmtpSink, http_server, smtp_server
from tests.integration.sender.test_reporter import SYNC, answering, items
from tests.samples import pec

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def imap() -> Iterator[Dovecot]:
    with dovecot_server(["pec", "pec2"]) as server:
        yield server


def _message_id(sink: SmtpSink, mail_id: str) -> str:
    received = next(r for r in sink.received if r.mail_id == mail_id)
    return str(email.message_from_bytes(received.data, policy=policy.compat32)["Message-ID"])


async def test_the_full_receipt_set_and_both_timeouts(world: World, imap: Dovecot) -> None:
    sink = SmtpSink()
    receiver = HttpApp({SYNC: answering()})
    ids = ["p1", "p2", "p3", "p4", "p5", "p6"]
    async with smtp_server(sink) as port, http_server(receiver) as app:
        await world.tenant("acme", client_base_url=app.url)
        await world.account(
            "acme",
            "pec1",
            port,
            username="sender@pec.example.it",
            is_pec_account=True,
            imap_host=imap.host,
            imap_port=imap.port,
            imap_user="pec",
            imap_password=world.box.encrypt(PASSWORD),
            imap_ssl=False,
        )
        await world.enqueue(
            "acme", "pec1", *({"id": i, "to": [f"{i}@pec.example.it"]} for i in ids)
        )
        settings = {
            **INBOUND_FAST,
            "pec_poll_interval_seconds": 1.0,
            "pec_acceptance_timeout_seconds": 4,
            "pec_delivery_timeout_seconds": 6,
        }
        async with running_sender(world, **settings):

            async def sent() -> bool:
                states = await world.states("acme")
                return all(states.get(i) == "sent" for i in ids)

            await eventually(sent)
            assert await world.fetchval("SELECT bool_and(is_pec) FROM messages") is True
            ref = {i: _message_id(sink, i) for i in ids}
            for kind, message in (
                ("accettazione", "p1"),
                ("avvenuta-consegna", "p1"),
                ("accettazione", "p2"),
                ("mancata-consegna", "p2"),
                ("non-accettazione", "p3"),
                ("presa-in-carico", "p4"),
                ("accettazione", "p6"),
            ):
                imap.append(
                    "pec",
                    pec.receipt(
                        kind,
                        reference=ref[message],
                        recipient=f"{message}@pec.example.it",
                        error="Casella piena" if "mancata" in kind else None,
                    ),
                )
            imap.append("pec", pec.receipt(None, subject="Re: Fattura 1"))  # not a receipt

            async def all_reported() -> bool:
                kinds = {(i["id"], i["pec_event"]) for i in items(app) if "pec_event" in i}
                return {("p5", "pec_timeout"), ("p6", "pec_delivery_timeout")} <= kinds and len(
                    kinds
                ) >= 10

            await eventually(all_reported, timeout=60)

    pec_items = [i for i in items(app) if "pec_event" in i]
    got = sorted((i["id"], i["pec_event"], i.get("pec_details")) for i in pec_items)
    assert got == sorted(
        [
            ("p1", "pec_acceptance", "PEC accettazione"),
            ("p1", "pec_delivery", "PEC consegna"),
            ("p2", "pec_acceptance", "PEC accettazione"),
            ("p2", "pec_error", "PEC mancata_consegna"),
            ("p3", "pec_error", "PEC non_accettazione"),
            ("p4", "pec_acceptance", "PEC presa_in_carico"),
            ("p4", "pec_delivery_timeout", "PEC delivery receipt not received in time"),
            ("p5", "pec_timeout", "PEC acceptance timeout - message treated as normal email"),
            ("p6", "pec_acceptance", "PEC accettazione"),
            ("p6", "pec_delivery_timeout", "PEC delivery receipt not received in time"),
        ]
    )
    for item in pec_items:
        assert set(item) == {"id", "pec_event", "pec_ts", "pec_details"}
    states = {
        r["id"]: r["is_pec"]
        for r in await world.pool.fetch("SELECT id, is_pec FROM messages ORDER BY id")
    }
    # An error or the acceptance timeout turns the message into ordinary mail.
    assert states == {"p1": True, "p2": False, "p3": False, "p4": True, "p5": False, "p6": True}
    assert await world.fetchval("SELECT imap_last_uid FROM accounts WHERE id = 'pec1'") == 8


async def test_the_rules_other_receipts(world: World, imap: Dovecot) -> None:
    """The rest of the PEC rules' receipt kinds, through a real mailbox: the 12-hour
    `preavviso-errore-consegna` is a warning (the message stays PEC and a later delivery
    receipt still counts), `rilevazione-virus` and the rules' own subjects are errors, a
    receipt known only by its daticert.xml is read, and certified mail *to* the mailbox is not
    a receipt."""
    sink = SmtpSink()
    receiver = HttpApp({SYNC: answering()})
    ids = ["q1", "q2", "q3", "q4"]
    async with smtp_server(sink) as port, http_server(receiver) as app:
        await world.tenant("acme", client_base_url=app.url)
        await world.account(
            "acme",
            "pec2",
            port,
            username="sender@pec.example.it",
            is_pec_account=True,
            imap_host=imap.host,
            imap_port=imap.port,
            imap_user="pec2",
            imap_password=world.box.encrypt(PASSWORD),
            imap_ssl=False,
        )
        two = {"q2": ["q2@pec.example.it", "Q2b <q2b@pec.example.it>"]}
        await world.enqueue(
            "acme",
            "pec2",
            *({"id": i, "to": two.get(i, [f"{i}@pec.example.it"])} for i in ids),
        )
        settings = {
            **INBOUND_FAST,
            "pec_poll_interval_seconds": 1.0,
            "pec_acceptance_timeout_seconds": 3600,
            "pec_delivery_timeout_seconds": 7200,
        }
        async with running_sender(world, **settings):

            async def sent() -> bool:
                states = await world.states("acme")
                return all(states.get(i) == "sent" for i in ids)

            await eventually(sent)
            ref = {i: _message_id(sink, i) for i in ids}
            for raw in (
                pec.receipt("accettazione", reference=ref["q1"]),
                pec.receipt(
                    "preavviso-errore-consegna",
                    reference=ref["q1"],
                    recipient="q1@pec.example.it",
                ),
                pec.receipt("avvenuta-consegna", reference=ref["q1"]),
                pec.receipt(
                    "rilevazione-virus", reference=ref["q2"], recipient="q2b@pec.example.it"
                ),
                pec.receipt(None, subject="AVVISO DI MANCATA CONSEGNA: x", reference=ref["q3"]),
                pec.receipt_with_daticert(
                    "errore-consegna", reference=ref["q4"], errore_esteso="5.1.1 inesistente"
                ),
                pec.certified_mail(reference=ref["q4"]),
            ):
                imap.append("pec2", raw)

            async def all_reported() -> bool:
                return len([i for i in items(app) if "pec_event" in i]) >= 6

            await eventually(all_reported, timeout=60)

    got = sorted(
        (i["id"], i["pec_event"], i.get("pec_details")) for i in items(app) if "pec_event" in i
    )
    assert got == sorted(
        [
            ("q1", "pec_acceptance", "PEC accettazione"),
            ("q1", "pec_delivery_warning", "PEC preavviso_mancata_consegna"),
            ("q1", "pec_delivery", "PEC consegna"),
            ("q2", "pec_error", "PEC rilevazione_virus"),
            ("q3", "pec_error", "PEC mancata_consegna"),
            ("q4", "pec_error", "PEC mancata_consegna"),
        ]
    )
    states = {
        r["id"]: r["is_pec"]
        for r in await world.pool.fetch("SELECT id, is_pec FROM messages ORDER BY id")
    }
    assert states == {"q1": True, "q2": False, "q3": False, "q4": False}
    reason = await world.fetchval(
        "SELECT metadata->>'error_reason' FROM message_events WHERE message_id = 'q4'"
        " AND event_type = 'pec_error'"
    )
    assert reason == "5.1.1 inesistente"
    warning = await world.fetchval(
        "SELECT metadata->>'error_reason' FROM message_events WHERE message_id = 'q1'"
        " AND event_type = 'pec_delivery_warning'"
    )
    assert warning == "delivery not yet confirmed within the maximum time"
    assert await world.fetchval("SELECT imap_last_uid FROM accounts WHERE id = 'pec2'") == 7
    # The error receipt named one recipient of q2: that recipient's outcome says so.
    async with world.pool.acquire() as conn:
        pk = await conn.fetchval("SELECT pk FROM messages WHERE id = 'q2'")
        rows = wire_list((await for_messages(conn, message_pks=[pk]))[pk])
    assert sorted(rows, key=lambda r: str(r["address"])) == [
        {
            "address": "Q2b <q2b@pec.example.it>",
            "status": "refused",
            "code": None,
            "reason": "PEC rilevazione_virus: virus detected",
        },
        {"address": "q2@pec.example.it", "status": "accepted", "code": None, "reason": None},
    ]
