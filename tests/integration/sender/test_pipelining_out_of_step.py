"""Replies that do not fit the commands (RFC 5321 4.2, 4.3.2; RFC 2920 3.1): nobody gets an
answer that was not theirs, no recipient is taken for delivered when the message was never
sent, and the session is closed, whether the transaction went pipelined or one command at a
time. A hostile server cannot make the reader spin or keep what it sends.
"""

from __future__ import annotations

import asyncio

import pytest

from mail_proxy_sender.delivery.failures import SessionEnded
from mail_proxy_sender.delivery.replies import OutOfStep, ReplyReader
from mail_proxy_sender.delivery.smtp_client import TransactionResult
from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.test_pipelining import SILENCE, GroupServer, _send, group_server

EVERYONE = ["a@example.org", "b@example.org", "c@example.org"]
TOO_LONG = "\r\n".join(["250-" + "x" * 200] * 200) + "\r\n250 end"  # 40 KB in one reply
WAYS = pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one at a time"])


def _server(pipelining: bool, replies: dict[str, str]) -> GroupServer:
    # One command at a time: each is answered at once (the group server would wait for DATA).
    return GroupServer(pipelining=pipelining, answer_at_data=pipelining, replies=replies)


def _nobody_lost(result: TransactionResult) -> None:
    assert set(result.untried) | set(result.answers) == set(EVERYONE)
    assert not set(result.untried) & set(result.answers)


@WAYS
async def test_one_reply_too_many_answers_nobody(pipelining: bool) -> None:
    """An extra reply at MAIL (an unsolicited line, a server answering twice) shifts every
    reply after it by one, in a group and (aiosmtplib keeping the second reply of a read for
    the next command) one command at a time: b's refusal would be c's, DATA would get a 250."""
    server = _server(pipelining, {"MAIL": "250 OK\r\n250 Again", "b@example.org": "550 No"})
    async with group_server(server) as conn:
        result = await _send(conn, *EVERYONE)
        assert result.answers == {}
        assert result.untried == EVERYONE
        assert isinstance(result.ended, SessionEnded)
        assert "out of step" in result.ended.described
        assert result.ended_at_address is None  # no recipient is the suspect
        assert not conn.usable(conn.target)
    assert server.bodies == []


@WAYS
@pytest.mark.parametrize(
    ("at", "reply"),
    [
        ("DATA", "250 2.0.0 Ok"),  # the message was never sent: nobody has it
        ("DATA", "220 what"),
        ("MAIL", "251 2.1.0 Ok"),
        ("MAIL", "354 go on"),
        ("b@example.org", "252 2.1.5 Cannot verify"),
        ("b@example.org", "354 go on"),
        ("b@example.org", "700 what"),
        ("b@example.org", "2x0 what"),
        ("b@example.org", TOO_LONG),
    ],
)
async def test_a_reply_that_fits_no_command_ends_the_session_and_accepts_nobody(
    pipelining: bool, at: str, reply: str
) -> None:
    server = _server(pipelining, {at: reply})
    async with group_server(server) as conn:
        result = await _send(conn, *EVERYONE)
        assert isinstance(result.ended, SessionEnded)  # a new session, not a failed message
        assert all(not 200 <= a.code < 300 for a in result.answers.values())
        _nobody_lost(result)
        assert not conn.usable(conn.target)
    assert server.bodies == []


@WAYS
async def test_an_end_of_data_reply_that_fits_nothing_retries_the_recipients(
    pipelining: bool,
) -> None:
    server = _server(pipelining, {"END": "354 more", "c@example.org": "550 No"})
    async with group_server(server) as conn:
        result = await _send(conn, *EVERYONE)
        assert isinstance(result.ended, SessionEnded)
        assert result.untried == ["a@example.org", "b@example.org"]  # kept or not: unknown
        assert result.answers["c@example.org"].code == 550  # answered before the body
        assert not conn.usable(conn.target)


async def test_a_flood_of_replies_is_dropped_not_kept() -> None:
    """Replies past those owed end the reading: nothing more is buffered or parsed."""
    reader = ReplyReader(asyncio.Protocol())
    reader.expect(2)
    flood = b"250 OK\r\n" * 10_000
    for _ in range(50):
        reader.data_received(flood)
    assert reader.unread
    assert len(reader._buffer) == 0  # what came past the reply owed is not kept
    with pytest.raises(OutOfStep, match="a reply no command asked for"):
        await reader.reply(1.0)  # not even the replies owed: which ones they are is unknown


@pytest.mark.timeout(30)
async def test_a_reply_a_byte_at_a_time_is_parsed_once() -> None:
    """Continuation lines trickled a byte per read: each line is parsed once (every byte used
    to re-parse the whole reply so far: 32 KB took a CPU-minute, the sender's loop stalled)."""
    reader = ReplyReader(asyncio.Protocol())
    reader.expect(1)
    reply = b"250-abc\r\n" * 3600 + b"250 end\r\n"
    for i in range(len(reply)):
        reader.data_received(reply[i : i + 1])
    parsed = await reader.reply(1.0)
    assert parsed.code == 250
    assert parsed.message.count("\n") == 3600
    assert not reader.unread


async def test_a_session_limit_is_not_learned_as_a_transaction_limit() -> None:
    """A 452 in a session's second transaction is the session's limit: groups larger than
    what that transaction took still go pipelined on the next sessions."""
    server = GroupServer(answer_at_data=False)
    async with group_server(server) as conn:
        await _send(conn, *EVERYONE)
        server.replies["b@example.org"] = "452 4.5.3 Too many recipients"
        result = await _send(conn, *EVERYONE)
        assert result.answers["b@example.org"].code == 452
        server.replies.clear()
        await _send(conn, *EVERYONE)
    assert server.mail_with_more == [True, True, True]


async def test_a_learned_limit_is_forgotten_once_a_larger_group_is_taken() -> None:
    server = GroupServer(answer_at_data=False, replies={"c@example.org": "452 4.5.3 Too many"})
    async with group_server(server) as conn:
        await _send(conn, *EVERYONE)  # 2 taken, then "too many": learned
        server.replies.clear()
        await _send(conn, *EVERYONE)  # one command at a time, all taken: forgotten
        await _send(conn, *EVERYONE)
    assert server.mail_with_more == [True, False, True]


@WAYS
@pytest.mark.parametrize(
    "replies",
    [
        {"MAIL": SILENCE},
        {"b@example.org": SILENCE},
        {"DATA": SILENCE},
        {"END": SILENCE},
        {"MAIL": "550 5.7.1 No", "RSET": SILENCE},
    ],
    ids=["MAIL", "RCPT", "DATA", "END", "RSET"],
)
async def test_a_cancelled_transaction_closes_the_session(
    pipelining: bool, replies: dict[str, str]
) -> None:
    """The sender shutting down mid-transaction (or at the RSET after it): a reply still owed
    would be the next command's, so the session is not used again."""
    server = _server(pipelining, replies)
    async with group_server(server) as conn:
        task = asyncio.create_task(_send(conn, *EVERYONE))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not conn.usable(conn.target)


@WAYS
async def test_a_421_at_the_end_of_data_closes_the_session(pipelining: bool) -> None:
    """The server is closing the session (RFC 5321 3.8): it is not used again, and whether it
    kept the message is unknown, so the recipients are tried again."""
    server = _server(pipelining, {"END": "421 4.3.2 Shutting down"})
    async with group_server(server) as conn:
        result = await _send(conn, *EVERYONE)
        assert isinstance(result.ended, SessionEnded)
        assert result.untried == EVERYONE
        assert not conn.usable(conn.target)


@WAYS
async def test_a_server_always_out_of_step_defers_the_message_and_sends_nothing(
    world: World, pipelining: bool
) -> None:
    """Sessions end one after another (bounded), then the message waits for the retry table:
    never sent on an answer that was not its own, never wedged."""
    server = _server(pipelining, {"MAIL": "250 OK\r\n250 Again", "b@example.org": "550 No"})
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    try:
        await world.tenant("acme")
        await world.account("acme", "smtp1", listening.sockets[0].getsockname()[1])
        await world.enqueue("acme", "smtp1", {"id": "m1", "to": EVERYONE})
        async with running_sender(world):
            await eventually(lambda: _deferred(world))
    finally:
        listening.close()
        await listening.wait_closed()
    assert server.bodies == []
    assert 1 < server.connections <= 1 + 2 + 5  # GMP_SMTP_RECONNECT_ATTEMPTS, suspects
    statuses = await world.fetchval(
        "SELECT array_agg(DISTINCT status) FROM message_recipients WHERE address = ANY($1)",
        EVERYONE,
    )
    assert statuses in (None, ["deferred"])  # nobody refused for another's 550


async def _deferred(world: World) -> bool:
    return (await world.message("acme", "m1"))["state"] == "deferred"
