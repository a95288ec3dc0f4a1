"""A server's words that Postgres cannot store as they came (a Latin-1 byte, a NUL) are stored
readable, and every other outcome of the sender with them: one such reply used to fail every
outcome batch it was in, for ever (the message sent, its outcome never recorded, sent again
once its lease ran out)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.test_pipelining import GroupServer

LATIN_1 = "550 5.1.1 Benutzer unbekannt: m\udcfcller"  # "\udcfc": the raw byte 0xFC
NUL = "550 5.1.1 no\x00body"
MIXED = "550 5.1.1 caf\udcc3\udca9, not \udcff"  # UTF-8 "é" as bytes, then a byte that is not


@contextlib.asynccontextmanager
async def _server(world: World, server: GroupServer) -> AsyncIterator[None]:
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    try:
        await world.tenant("acme")
        await world.account("acme", "smtp1", listening.sockets[0].getsockname()[1])
        yield
    finally:
        listening.close()
        await listening.wait_closed()


async def _final(world: World, message_id: str) -> bool:
    return (await world.message("acme", message_id))["state"] in ("sent", "error")


@pytest.mark.parametrize(
    ("reply", "stored", "pipelining"),
    [
        (LATIN_1, "550 5.1.1 Benutzer unbekannt: m\ufffdller", True),
        (NUL, "550 5.1.1 no\ufffdbody", True),
        (MIXED, "550 5.1.1 café, not \ufffd", True),
        (LATIN_1, "550 5.1.1 Benutzer unbekannt: m\ufffdller", False),
    ],
)
async def test_a_refusal_in_bytes_postgres_cannot_store_is_stored_readable(
    world: World, reply: str, stored: str, pipelining: bool
) -> None:
    server = GroupServer(
        pipelining=pipelining, answer_at_data=pipelining, replies={"gone@example.org": reply}
    )
    async with _server(world, server):
        await world.enqueue(
            "acme",
            "smtp1",
            {"id": "m1", "to": ["ok@example.org", "gone@example.org"]},
            {"id": "m2", "to": ["ok@example.org"]},  # stored in the same batch, or after it
        )
        async with running_sender(world):
            await eventually(lambda: _final(world, "m1"))
            await eventually(lambda: _final(world, "m2"))
    assert (await world.message("acme", "m1"))["state"] == "sent"
    assert (await world.message("acme", "m2"))["state"] == "sent"
    reason = await world.fetchval(
        "SELECT reason FROM message_recipients WHERE address = 'gone@example.org'"
    )
    assert reason == stored
    assert len(server.bodies) == 2  # each message sent once


async def test_a_message_refused_in_such_bytes_is_an_error_stored_readable(world: World) -> None:
    server = GroupServer(replies={"END": "554 5.7.1 Spam: \udcfc\x00"})
    async with _server(world, server):
        await world.enqueue("acme", "smtp1", {"id": "m1", "to": ["ok@example.org"]})
        async with running_sender(world):
            await eventually(lambda: _final(world, "m1"))
    row = await world.message("acme", "m1")
    assert row["state"] == "error"
    assert "Spam: \ufffd\ufffd" in row["error"]
    events = await world.events("acme", "m1")
    assert any("Spam: \ufffd\ufffd" in (e["description"] or "") for e in events)
