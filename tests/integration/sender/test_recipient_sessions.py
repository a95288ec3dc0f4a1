"""A recipient can never keep the others from their message, and a recipient limit never
refuses anybody (issue 10 items 1-2), against a strict aiosmtpd server and the real sender."""

from __future__ import annotations

import pytest

from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.servers import SmtpSink, smtp_server
from tests.integration.sender.test_recipients import RETRY_FAST, _is, _items, _rows, _setup

pytestmark = pytest.mark.usefixtures("either_exchange")

TO = ["a@example.org", "bad@example.org", "b@example.org", "c@example.org"]


def _hangup(reply: str | None) -> SmtpSink:
    return SmtpSink(rcpt_hangups={"bad@example.org": reply})


SESSION_ENDERS = {
    "421": lambda: _hangup("421 4.3.2 Service shutting down"),
    "hang-up after 250": lambda: _hangup(None),
    "timeout": lambda: SmtpSink(rcpt_stalls={"bad@example.org"}),
}


@pytest.mark.parametrize("kind", list(SESSION_ENDERS))
async def test_a_recipient_ending_the_session_does_not_keep_the_others_from_the_message(
    world: World, kind: str
) -> None:
    sink = SESSION_ENDERS[kind]()
    timeout = {"smtp_timeout_seconds": 1.0} if kind == "timeout" else {}
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1", "to": TO})
        async with running_sender(world, max_retries=1, **RETRY_FAST, **timeout):
            await eventually(lambda: _is(world, "deferred"), timeout=30)
            # The others got it at once, in one transaction, and are never sent to again.
            assert [r.rcpt_tos for r in sink.received] == [
                ["a@example.org", "b@example.org", "c@example.org"]
            ]
            rows = await _rows(world)
            assert rows["bad@example.org"]["status"] == "deferred"
            assert rows["bad@example.org"]["code"] is None  # the server said nothing about it
            await eventually(lambda: _is(world, "sent"), timeout=30)
    assert len(sink.received) == 1
    # Named alone once per attempt after it ended a session: no new session only to see it
    # end the same way (first attempt: among the others, then alone; the retry: alone).
    assert sink.rcpts_seen.count("bad@example.org") == 3
    rows = await _rows(world)
    assert {a: r["status"] for a, r in rows.items()} == {
        "a@example.org": "accepted",
        "b@example.org": "accepted",
        "bad@example.org": "refused",  # given up (code null: no server refused it)
        "c@example.org": "accepted",
    }
    bad = rows["bad@example.org"]
    assert bad["code"] is None
    assert bad["next_attempt_ts"] is None
    assert bad["reason"].startswith("Max retries (1) exceeded: the session ended at this recipient")
    deferred, sent = await _items(world)
    assert [r["address"] for r in deferred["recipients"]] == TO
    assert {r["status"] for r in sent["recipients"]} == {"accepted", "refused"}
    assert [r for r in sent["recipients"] if r["status"] != "accepted"] == [
        {"address": "bad@example.org", "status": "refused", "code": None, "reason": bad["reason"]}
    ]
    assert "refused" not in sent


async def test_several_recipients_ending_sessions_cannot_use_up_the_others_reconnects(
    world: World,
) -> None:
    bad = ["x1@example.org", "x2@example.org", "x3@example.org"]
    sink = SmtpSink(
        rcpt_hangups={bad[0]: "421 4.3.2 Bye", bad[1]: None, bad[2]: "421 4.4.2 Timeout"}
    )
    to = [bad[0], "a@example.org", bad[1], "b@example.org", bad[2]]
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1", "to": to})
        async with running_sender(world, **RETRY_FAST):
            await eventually(lambda: _is(world, "deferred"), timeout=30)
            assert [r.rcpt_tos for r in sink.received] == [["a@example.org", "b@example.org"]]
            # The next attempt names each of them alone again: still nobody else named twice.
            await eventually(lambda: _seen(sink, bad[2], 2), timeout=30)
    assert [r.rcpt_tos for r in sink.received] == [["a@example.org", "b@example.org"]]
    rows = await _rows(world)
    assert {a: r["status"] for a, r in rows.items() if a in bad} == dict.fromkeys(bad, "deferred")
    assert all(rows[a]["code"] is None for a in bad)


async def _seen(sink: SmtpSink, address: str, times: int) -> bool:
    return sink.rcpts_seen.count(address) >= times


async def test_a_session_ending_at_data_defers_nobody_in_particular(world: World) -> None:
    """Every recipient accepted at RCPT, then the server hangs up at DATA each time: the whole
    message is retried as before (no recipient blamed, no list), and ends an error."""
    sink = SmtpSink(hangup_at="data")
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1", "to": TO})
        async with running_sender(world, max_retries=1, **RETRY_FAST):
            await eventually(lambda: _is(world, "error"), timeout=30)
    assert await _rows(world) == {}
    items = await _items(world)
    assert all("recipients" not in item for item in items)
    assert "Max retries" in items[-1]["error"]


async def test_accepted_recipients_stay_accepted_when_a_later_session_ends(
    world: World,
) -> None:
    """A greylisted recipient's retry meets a server that hangs up: it is given up (refused
    with no code) when the retries run out, and the one who accepted is never named again."""
    sink = SmtpSink(rcpt_replies={"grey@example.org": "451 4.7.1 Greylisted"})
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue(
            "acme", "smtp1", {"id": "m1", "to": ["ok@example.org", "grey@example.org"]}
        )
        async with running_sender(world, max_retries=2, **RETRY_FAST):
            await eventually(lambda: _is(world, "deferred"))
            sink.hangup_at, sink.rcpt_replies = "rcpt", {}
            await eventually(lambda: _is(world, "sent"), timeout=30)
    assert sink.rcpts_seen.count("ok@example.org") == 1
    rows = await _rows(world)
    assert rows["ok@example.org"]["status"] == "accepted"
    grey = rows["grey@example.org"]
    assert (grey["status"], grey["code"]) == ("refused", None)
    assert "Service shutting down" in grey["reason"]


TOO_MANY_REPLIES = [
    "452 4.5.3 Too many recipients",
    "452 Too many recipients",
    "452 4.2.1 too many recipients for this message",
    "452 4.3.1 Try again with fewer recipients",
    "552 5.5.3 Too many recipients",
]


@pytest.mark.parametrize("reply", TOO_MANY_REPLIES)
async def test_every_recipient_limit_answer_sends_the_rest_in_further_transactions(
    world: World, reply: str
) -> None:
    sink = SmtpSink(max_recipients=2, too_many_reply=reply)
    to = [f"r{i}@example.org" for i in range(5)]
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1", "to": to})
        async with running_sender(world):
            await eventually(lambda: _is(world, "sent"))
    assert [r.rcpt_tos for r in sink.received] == [to[0:2], to[2:4], to[4:5]]
    [item] = await _items(world)
    assert set(item) == {"id", "sent_ts"}


async def test_recipients_past_the_limit_are_not_named_to_collect_errors(
    world: World, either_exchange: bool
) -> None:
    """A Postfix-like server hangs up after a few errors: once the limit answered, the rest
    wait for the next transaction instead of each collecting a 452. A pipelined group has
    named them all before the limit is known (RFC 2920): that first session ends at the error
    limit, blaming nobody, and the next sessions to the server name no more than it took."""
    sink = SmtpSink(max_recipients=3, error_limit=3)
    to = [f"r{i}@example.org" for i in range(10)]
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1", "to": to})
        async with running_sender(world):
            await eventually(lambda: _is(world, "sent"))
    assert [r.rcpt_tos for r in sink.received] == [to[0:3], to[3:6], to[6:9], to[9:10]]
    if either_exchange:  # pipelined: r0-r2 taken, r3-r5 "too many", 421 at r6
        assert sink.connections == 2
        assert sink.rcpts_seen[:7] == to[:7]
        # The second session names them as one command at a time does (a 452 each time).
        assert sink.rcpts_seen[-13:] == to[0:4] + to[3:7] + to[6:10] + to[9:10]
    else:
        assert sink.connections == 1
        assert len(sink.rcpts_seen) == 13  # each of the 10 once, and 3 answered "too many"


async def test_a_limit_per_session_goes_on_in_a_new_session(world: World) -> None:
    sink = SmtpSink(session_max_recipients=2)
    to = [f"r{i}@example.org" for i in range(5)]
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1", "to": to})
        async with running_sender(world, smtp_reconnect_attempts=3):
            await eventually(lambda: _is(world, "sent"))
    assert [r.rcpt_tos for r in sink.received] == [to[0:2], to[2:4], to[4:5]]
    assert sink.connections == 3


async def test_a_session_limit_without_reconnects_left_goes_on_at_the_next_attempt(
    world: World,
) -> None:
    sink = SmtpSink(session_max_recipients=1)
    to = ["a@example.org", "b@example.org"]
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1", "to": to})
        async with running_sender(world, smtp_reconnect_attempts=0, **RETRY_FAST):
            await eventually(lambda: _is(world, "sent"), timeout=30)
    assert [r.rcpt_tos for r in sink.received] == [["a@example.org"], ["b@example.org"]]
    deferred, _sent = await _items(world)
    assert deferred["recipients"][1]["status"] == "deferred"


async def test_a_recipient_limit_never_refuses_anybody_after_max_retries(world: World) -> None:
    """A server that takes nobody on any session: the recipients wait for the retry table,
    and when it runs out they are deferred (given up), never refused."""
    sink = SmtpSink(max_recipients=0)
    to = ["a@example.org", "b@example.org"]
    async with smtp_server(sink) as port:
        await _setup(world, port)
        await world.enqueue("acme", "smtp1", {"id": "m1", "to": to})
        async with running_sender(world, max_retries=1, **RETRY_FAST):
            await eventually(lambda: _is(world, "error"), timeout=30)
    rows = await _rows(world)
    for address in to:
        assert (rows[address]["status"], rows[address]["code"]) == ("refused", None)
        assert rows[address]["reason"] == (
            "Max retries (1) exceeded: 452 4.5.3 Too many recipients"
        )
    assert sink.received == []
    assert sink.connections == 2  # one fresh session per attempt, no loop
    *_, error = await _items(world)
    assert error["error"].startswith("No recipient accepted: a@example.org: Max retries")
    assert {r["status"] for r in error["recipients"]} == {"refused"}
