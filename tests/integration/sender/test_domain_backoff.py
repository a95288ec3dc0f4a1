"""A destination domain whose servers throttle at RCPT is backed off on its own: the account
keeps sending to other domains (issue 10 item 4)."""

from __future__ import annotations

import time

import pytest

from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.servers import SmtpSink, smtp_server

pytestmark = pytest.mark.usefixtures("either_exchange")


async def _is(world: World, message_id: str, state: str) -> bool:
    return str((await world.message("acme", message_id))["state"]) == state


@pytest.mark.parametrize(
    "reply",
    [
        "451 4.7.1 Rate limit exceeded for slow.example, slow down",
        "421 4.7.0 Too many messages to slow.example, try later",
        "450 4.7.1 throttled: too many recipients from your IP to this domain",
    ],
)
async def test_a_throttling_domain_waits_and_the_others_keep_going(
    world: World, reply: str
) -> None:
    sink = SmtpSink(rcpt_replies={"a1@slow.example": reply})
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue(
            "acme", "smtp1", {"id": "m1", "to": ["a1@slow.example", "b1@fast.example"]}
        )
        async with running_sender(world, throttle_base_seconds=120, throttle_max_seconds=600):
            await eventually(lambda: _is(world, "m1", "deferred"))
            started = time.time()
            await world.enqueue(
                "acme",
                "smtp1",
                {"id": "m2", "to": ["a2@slow.example", "c2@fast.example"]},
                {"id": "m3", "to": ["d3@fast.example"]},
            )
            await eventually(lambda: _is(world, "m3", "sent"))
            await eventually(lambda: _is(world, "m2", "deferred"))
    # The domain's next recipient was never named; the other domain got every message.
    assert "a2@slow.example" not in sink.rcpts_seen
    assert sorted(r for received in sink.received for r in received.rcpt_tos) == [
        "b1@fast.example",
        "c2@fast.example",
        "d3@fast.example",
    ]
    # The account itself was not backed off.
    assert await world.fetchval("SELECT throttle_level FROM accounts") == 0
    m2 = await world.message("acme", "m2")
    assert m2["deferred_ts"] >= started + 100  # comes back when the domain's back-off ends
    async with world.pool.acquire() as conn:
        rows = {
            r["address"]: r
            for r in await conn.fetch(
                "SELECT r.* FROM message_recipients r JOIN messages m ON m.pk = r.message_pk "
                "WHERE m.id = 'm2'"
            )
        }
    assert rows["a2@slow.example"]["status"] == "deferred"
    assert rows["a2@slow.example"]["reason"] == "domain slow.example throttled by its servers"
    assert rows["c2@fast.example"]["status"] == "accepted"


async def test_greylisting_at_rcpt_backs_off_no_domain(world: World) -> None:
    sink = SmtpSink(rcpt_replies={"a1@slow.example": "451 4.7.1 Greylisted, try again later"})
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "m1", "to": ["a1@slow.example"]})
        async with running_sender(world, throttle_base_seconds=120):
            await eventually(lambda: _is(world, "m1", "deferred"))
            await world.enqueue("acme", "smtp1", {"id": "m2", "to": ["a2@slow.example"]})
            await eventually(lambda: _is(world, "m2", "sent"))
    assert "a2@slow.example" in sink.rcpts_seen


async def test_every_sender_honours_a_domain_throttle_another_sender_learned(
    world: World,
) -> None:
    """Shared through Postgres (NOTIFY): the sender that was not told backs the domain off too,
    and names none of its recipients (issue 10 item 6)."""
    sink = SmtpSink(rcpt_replies={"a1@slow.example": "451 4.7.1 Rate limit exceeded, slow down"})
    settings = {"throttle_base_seconds": 120, "throttle_max_seconds": 600}
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        account_pk = await world.fetchval("SELECT pk FROM accounts")
        async with (
            running_sender(world, owner="sender-a", **settings) as a,
            running_sender(world, owner="sender-b", **settings) as b,
        ):
            await world.enqueue("acme", "smtp1", {"id": "m1", "to": ["a1@slow.example"]})
            await eventually(lambda: _is(world, "m1", "deferred"))

            async def both_know() -> bool:
                now = time.time()
                return all(
                    s.domains is not None
                    and s.domains.until(account_pk, "slow.example", now) is not None
                    for s in (a, b)
                )

            await eventually(both_know, timeout=5)
            await world.enqueue(
                "acme",
                "smtp1",
                *(
                    {"id": f"n{i}", "to": [f"x{i}@slow.example", f"y{i}@fast.example"]}
                    for i in range(6)
                ),
            )
            for i in range(6):
                await eventually(lambda i=i: _is(world, f"n{i}", "deferred"))
    assert [r for r in sink.rcpts_seen if r.endswith("@slow.example")] == ["a1@slow.example"]
    assert len(sink.received) == 6  # the other domain got every message
