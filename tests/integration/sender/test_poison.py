"""Poison messages: whatever goes wrong with one message ends in an outcome for it, and an
expired lease counts as an attempt, so nothing stays in `sending` or is retried for ever."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mail_proxy.config import Settings
from mail_proxy.db.rescue import LEASE_EXPIRED
from mail_proxy_sender.maintenance.rescuer import rescue_once
from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.servers import SmtpSink, smtp_server

# Payloads the API refuses at intake; written here straight to the queue, as an older version
# of the API or a bug could have stored them.
POISON: list[dict[str, Any]] = [
    {"id": "hdr-colon", "headers": {"X-Bad:Name": "v"}},
    {"id": "hdr-nonascii", "headers": {"X-\u00c4rger": "v"}},
    {"id": "hdr-space", "headers": {"X Bad": "v"}},
    {"id": "hdr-empty", "headers": {"": "v"}},
    {"id": "bad-url", "attachments": [{"filename": "a", "storage_path": "http://[x"}]},
    {"id": "bad-mode", "attachments": [{"filename": "a", "storage_path": "x", "fetch_mode": 7}]},
    {"id": "crlf\r\nid"},
]


async def test_poison_messages_end_in_an_outcome_and_the_rest_is_sent(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", *POISON, {"id": "good"})

        async def settled() -> bool:
            states = await world.states("acme")
            return all(state in ("sent", "error", "deferred") for state in states.values())

        async with running_sender(world):
            await eventually(settled, timeout=30)
            states = await world.states("acme")
    assert states["good"] == "sent"
    for message in POISON:
        row = await world.message("acme", message["id"])
        assert row["state"] in ("error", "sent"), (message["id"], row["state"])
        if row["state"] == "error":
            assert row["error"], message["id"]


async def _lease_and_expire(world: World, message_id: str, attempts: int) -> None:
    await world.execute(
        "UPDATE messages SET state = 'sending', lease_owner = 'dead', attempts = $2, "
        "lease_until = now() - interval '1 second' WHERE id = $1",
        message_id,
        attempts,
    )


@pytest.mark.parametrize("max_retries", [0, 2])
async def test_an_expired_lease_counts_as_an_attempt(world: World, max_retries: int) -> None:
    await world.tenant("acme")
    await world.account("acme", "smtp1", 25)
    await world.enqueue("acme", "smtp1", {"id": "m1"})
    settings = Settings(max_retries=max_retries)
    for attempt in range(1, max_retries + 1):
        await _lease_and_expire(world, "m1", attempt)
        assert await rescue_once(world.pool, settings) == {"pending": 1}
        row = await world.message("acme", "m1")
        assert (row["state"], row["attempts"], row["lease_owner"]) == ("pending", attempt, None)
    await _lease_and_expire(world, "m1", max_retries + 1)
    assert await rescue_once(world.pool, settings) == {"error": 1}
    row = await world.message("acme", "m1")
    assert row["state"] == "error"
    assert row["error"] == f"Max retries ({max_retries}) exceeded: {LEASE_EXPIRED}"
    events = [(e["event_type"], e["description"]) for e in await world.events("acme", "m1")]
    assert events == [("deferred", LEASE_EXPIRED)] * max_retries + [("error", row["error"])]


async def test_a_live_lease_is_left_alone(world: World) -> None:
    await world.tenant("acme")
    await world.account("acme", "smtp1", 25)
    await world.enqueue("acme", "smtp1", {"id": "m1"})
    await world.execute(
        "UPDATE messages SET state = 'sending', lease_owner = 'alive', attempts = 9, "
        "lease_until = now() + interval '1 minute'"
    )
    assert await rescue_once(world.pool, Settings(max_retries=1)) == {}
    assert (await world.message("acme", "m1"))["state"] == "sending"
    assert time.time() > 0
