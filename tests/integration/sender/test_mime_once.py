"""MIME built once: a retry sends the bytes the first attempt built, without fetching the
attachments or building again; the stored form is dropped once the message is final."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from mail_proxy import rendered
from mail_proxy.mime import WireMessage
from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.servers import HttpApp, SmtpSink, http_server, smtp_server

PDF = b"%PDF-1.4 built once"


async def _pdf(_: Request) -> Response:
    return Response(PDF, media_type="application/pdf")


async def _state(world: World, state: str) -> bool:
    return (await world.message("acme", "m1"))["state"] == state


async def test_a_retry_sends_the_same_bytes_without_fetching_again(world: World) -> None:
    sink = SmtpSink(reply="450 4.2.0 Mailbox busy")
    files = HttpApp({"/f.pdf": _pdf})
    async with smtp_server(sink) as port, http_server(files) as app:
        await world.tenant("acme", client_base_url=app.url)
        await world.account("acme", "smtp1", port)
        attachment = {"filename": "f.pdf", "storage_path": app.url + "/f.pdf"}
        await world.enqueue("acme", "smtp1", {"id": "m1", "attachments": [attachment]})
        async with running_sender(
            world, retry_delays_seconds=(1,), retry_jitter_ratio=0.0, cache_memory_max_mb=0
        ):
            await eventually(lambda: _state(world, "deferred"))
            stored = (await world.message("acme", "m1"))["rendered"]
            assert stored is not None
            sink.reply = None
            await eventually(lambda: _state(world, "sent"), timeout=30)
    first, last = sink.attempted[0], sink.received[-1]
    assert first.data == last.data  # same Message-ID, Date, boundaries: the same bytes
    assert len(files.hits("/f.pdf")) == 1  # fetched for the first attempt only
    assert (await world.message("acme", "m1"))["rendered"] is None  # final: dropped


async def test_resubmitting_a_deferred_message_builds_it_anew(world: World) -> None:
    sink = SmtpSink(reply="450 4.2.0 Mailbox busy")
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "m1", "subject": "old"})
        async with running_sender(world, retry_delays_seconds=(3600,)):
            await eventually(lambda: _state(world, "deferred"))
        await world.enqueue("acme", "smtp1", {"id": "m1", "subject": "new"})
        assert (await world.message("acme", "m1"))["rendered"] is None
        sink.reply = None
        async with running_sender(world):
            await eventually(lambda: _state(world, "sent"), timeout=30)
    assert sink.received[-1].headers["Subject"] == "new"


def test_the_stored_form_round_trips_and_refuses_foreign_bytes() -> None:
    wire = WireMessage(
        envelope_from="a@example.org",
        recipients=["b@example.org", "ü@example.org"],
        data=b"Subject: x\r\n\r\nbody\n\nwith blank lines\r\n",
        message_id="<id@example.org>",
        smtputf8=True,
        utf8_recipients=frozenset({"ü@example.org"}),
    )
    assert rendered.unpack(rendered.pack(wire)) == wire
    for foreign in (b"", b"Subject: x\r\n\r\nbody", b"MP1\n{not json}\nbody", b"MP1\n{}"):
        try:
            rendered.unpack(foreign)
        except rendered.RenderedFormatError:
            continue
        raise AssertionError(foreign)
