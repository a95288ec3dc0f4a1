"""SMTP PIPELINING (RFC 2920): a transaction's MAIL, RCPTs and DATA go in one write when the
server offers it, and every reply means what it means one command at a time.

The server here answers a transaction only once its DATA has come (a client that waits for
each reply would wait for ever), writes the replies all at once or a byte at a time, and can
hang up or fall silent anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from mail_proxy.outbound import OutboundPolicy
from mail_proxy_sender.delivery.exchange import RecipientLimits
from mail_proxy_sender.delivery.failures import SessionEnded
from mail_proxy_sender.delivery.smtp_client import SmtpConnection, TransactionResult
from mail_proxy_sender.delivery.smtp_target import SmtpOptions, SmtpTarget
from tests.integration.sender.conftest import World, eventually
from tests.integration.sender.processes import sender_processes
from tests.integration.sender.servers import SmtpSink, smtp_server

HANG_UP = "HANG UP"  # a reply that is not one: the replies so far are written, then the close
SILENCE = "SILENCE"  # the replies so far are written, then nothing more ever


@dataclass
class GroupServer:
    """Replies by command: "MAIL", an address, "DATA", "END" (the end of data); 250, or 354
    for DATA when a recipient was taken, else 554, by default. "RSET" and "NOOP" can only be
    silent."""

    replies: dict[str, str] = field(default_factory=dict)
    trickle: bool = False  # write the replies one byte at a time
    pipelining: bool = True
    answer_at_data: bool = True  # else each command is answered at once
    mail_with_more: list[bool] = field(default_factory=list)  # more commands came with MAIL
    groups: list[list[bytes]] = field(default_factory=list)  # the commands of each transaction
    bodies: list[bytes] = field(default_factory=list)
    commands: list[bytes] = field(default_factory=list)  # every command line, in order
    connections: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _write(self, writer: asyncio.StreamWriter, text: str) -> None:
        data = text.encode("utf-8", "surrogateescape")  # "\udcXX": the raw byte XX
        for chunk in [data[i : i + 1] for i in range(len(data))] if self.trickle else [data]:
            writer.write(chunk)
            await writer.drain()
            if self.trickle:
                await asyncio.sleep(0)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._write(writer, "220 group.test ESMTP\r\n")
        group: list[bytes] = []
        pending: list[str] = []
        taken = False
        while line := await reader.readline():
            self.commands.append(line)
            verb = line[:4].upper()
            if verb == b"EHLO":
                offer = "250-PIPELINING\r\n" if self.pipelining else ""
                await self._write(writer, f"250-group.test\r\n{offer}250 SIZE 10000000\r\n")
            elif verb in (b"RSET", b"NOOP"):
                if self.replies.get(verb.decode()) == SILENCE:
                    await asyncio.sleep(3600)
                await self._write(writer, "250 OK\r\n")
            elif verb == b"QUIT":
                await self._write(writer, "221 Bye\r\n")
                return
            elif verb in (b"MAIL", b"RCPT", b"DATA"):
                if verb == b"MAIL":
                    self.mail_with_more.append(bool(reader._buffer))  # type: ignore[attr-defined]
                group.append(line)
                if verb == b"MAIL":
                    key, default = "MAIL", "250 OK"
                elif verb == b"RCPT":
                    key = line.split(b"<", 1)[1].split(b">", 1)[0].decode()
                    default = "250 OK"
                else:
                    key, default = "DATA", "354 Go ahead" if taken else "554 No valid recipients"
                reply = self.replies.get(key, default)
                if verb == b"RCPT" and reply.startswith("2"):
                    taken = True
                if reply in (HANG_UP, SILENCE):
                    await self._write(writer, "".join(pending))
                    if reply == SILENCE:
                        await asyncio.sleep(3600)
                    return
                pending.append(reply + "\r\n")
                if not self.answer_at_data:
                    await self._write(writer, pending.pop())
                if verb != b"DATA":
                    continue
                self.groups.append(group)
                await self._write(writer, "".join(pending))
                group, pending, taken = [], [], False
                if reply.startswith("354"):
                    body = bytearray()
                    while (body_line := await reader.readline()) != b".\r\n":
                        if not body_line:
                            raise ConnectionError("closed during the body")
                        body += body_line
                    self.bodies.append(bytes(body) + b".\r\n")
                    end = self.replies.get("END", "250 Queued")
                    if end == SILENCE:
                        await asyncio.sleep(3600)
                    await self._write(writer, end + "\r\n")
            else:
                await self._write(writer, "500 What\r\n")


@contextlib.asynccontextmanager
async def group_server(server: GroupServer) -> AsyncIterator[SmtpConnection]:
    """A connection opened to `server` on 127.0.0.1; both closed at the end."""
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    target = SmtpTarget("127.0.0.1", port, None, None, False, True, 300.0)
    options = SmtpOptions(
        2.0, (465,), None, "client.test", policy=OutboundPolicy.parse(["127.0.0.1"])
    )
    conn = SmtpConnection(target, options, RecipientLimits())
    try:
        await conn.open()
        yield conn
    finally:
        await conn.close()
        listening.close()
        await listening.wait_closed()


MESSAGE = b"Subject: hi\r\n\r\n.a line starting with a dot\r\nbye\r\n"


async def _send(conn: SmtpConnection, *recipients: str) -> TransactionResult:
    return await conn.transaction(
        sender="from@example.org", recipients=list(recipients), data=MESSAGE, smtputf8=False
    )


@pytest.mark.parametrize("trickle", [False, True], ids=["all at once", "a byte at a time"])
async def test_a_transaction_is_one_write_and_its_replies_are_read_in_order(trickle: bool) -> None:
    server = GroupServer(
        trickle=trickle, replies={"gone@example.org": "550-5.1.1 No such\r\n550 user"}
    )
    async with group_server(server) as conn:
        for _ in range(2):  # the session goes on in step
            result = await _send(conn, "a@example.org", "gone@example.org", "b@example.org")
            assert result.ended is None
            assert result.untried == []
            assert {a: r.code for a, r in result.answers.items()} == {
                "a@example.org": 250,
                "gone@example.org": 550,
                "b@example.org": 250,
            }
            assert result.answers["gone@example.org"].text == "5.1.1 No such\nuser"
            assert result.answers["a@example.org"].stage == "data"
        assert conn.usable(conn.target)
    assert [len(g) for g in server.groups] == [5, 5]  # MAIL, 3 RCPT, DATA in one go each
    # Dot-stuffed (RFC 5321 4.5.2) and ended by a lone dot.
    assert server.bodies[0] == b"Subject: hi\r\n\r\n..a line starting with a dot\r\nbye\r\n.\r\n"


async def test_a_refused_mail_reads_every_reply_and_the_session_goes_on() -> None:
    server = GroupServer(
        replies={"MAIL": "550 5.7.1 Sender refused", "a@example.org": "503 5.5.1 Need MAIL"}
    )
    async with group_server(server) as conn:
        result = await _send(conn, "a@example.org")
        assert result.refused_message is not None
        assert result.answers["a@example.org"].code == 550
        assert result.answers["a@example.org"].stage == "mail"
        del server.replies["MAIL"], server.replies["a@example.org"]
        assert (await _send(conn, "a@example.org")).answers["a@example.org"].code == 250
    assert server.commands[-3:] == [b"RCPT TO:<a@example.org>\r\n", b"DATA\r\n", b"QUIT\r\n"]
    assert b"RSET\r\n" in server.commands


async def test_data_let_through_without_recipients_is_ended_by_an_empty_message() -> None:
    """All RCPTs refused, yet DATA answered 354 (RFC 2920 3.1): a lone dot, nobody gets it."""
    server = GroupServer(
        replies={"a@example.org": "550 No", "b@example.org": "551 No", "DATA": "354 Go on"}
    )
    async with group_server(server) as conn:
        result = await _send(conn, "a@example.org", "b@example.org")
        assert {a: r.code for a, r in result.answers.items()} == {
            "a@example.org": 550,
            "b@example.org": 551,
        }
        assert result.ended is None
        assert conn.usable(conn.target)
        del server.replies["a@example.org"], server.replies["DATA"]
        again = await _send(conn, "a@example.org", "b@example.org")
        assert again.answers["a@example.org"].code == 250
    assert server.bodies[0] == b".\r\n"
    assert server.bodies[1].endswith(b"bye\r\n.\r\n")


async def test_past_a_too_many_answer_only_taken_recipients_count() -> None:
    """Recipients after "452 too many" were pipelined anyway: a 2xx for one of them means it is
    taken (it gets the message), any other answer is not its own: it goes in the next
    transaction."""
    server = GroupServer(
        replies={
            "b@example.org": "452 4.5.3 Too many recipients",
            "c@example.org": "452 4.5.3 Too many recipients",
            "d@example.org": "550 5.1.1 No such user",
        }
    )
    async with group_server(server) as conn:
        result = await _send(
            conn,
            "a@example.org",
            "b@example.org",
            "c@example.org",
            "d@example.org",
            "e@example.org",
        )
    assert {a: r.code for a, r in result.answers.items()} == {
        "a@example.org": 250,
        "b@example.org": 452,
        "e@example.org": 250,
    }
    assert result.untried == ["c@example.org", "d@example.org"]
    assert result.ended is None


async def test_a_learned_recipient_limit_sends_larger_groups_one_command_at_a_time() -> None:
    server = GroupServer(
        answer_at_data=False, replies={"c@example.org": "452 4.5.3 Too many recipients"}
    )
    async with group_server(server) as conn:
        await _send(conn, "a@example.org", "b@example.org", "c@example.org")
        server.replies.clear()
        result = await _send(conn, "a@example.org", "b@example.org", "c@example.org")
        assert {r.code for r in result.answers.values()} == {250}
        await _send(conn, "a@example.org", "b@example.org")
    # 2 taken before "too many": 3 go one at a time (until 3 are taken whole), 2 still pipelined.
    assert server.mail_with_more == [True, False, True]


@pytest.mark.parametrize(
    ("at", "ends_at"),
    [("MAIL", None), ("b@example.org", "b@example.org"), ("DATA", None)],
)
async def test_a_421_anywhere_ends_the_session_and_answers_nobody_untold(
    at: str, ends_at: str | None
) -> None:
    server = GroupServer(replies={at: "421 4.3.2 Shutting down"})
    async with group_server(server) as conn:
        result = await _send(conn, "a@example.org", "b@example.org", "c@example.org")
        assert isinstance(result.ended, SessionEnded)
        assert result.ended_at_address == ends_at
        assert set(result.untried) | set(result.answers) == {
            "a@example.org",
            "b@example.org",
            "c@example.org",
        }
        assert all(a.code != 250 for a in result.answers.values())
        assert not conn.usable(conn.target)


@pytest.mark.parametrize("how", [HANG_UP, SILENCE])
async def test_a_hang_up_or_silence_mid_group_ends_the_session(how: str) -> None:
    server = GroupServer(replies={"b@example.org": how})
    async with group_server(server) as conn:
        result = await _send(conn, "a@example.org", "b@example.org", "c@example.org")
        assert result.ended is not None
        assert result.ended_at_address == "b@example.org"  # the RCPT the session ended at
        assert result.answers == {}
        assert sorted(result.untried) == ["a@example.org", "b@example.org", "c@example.org"]
        assert not conn.usable(conn.target)


async def test_a_malformed_reply_ends_the_session() -> None:
    server = GroupServer(replies={"MAIL": "2x0 what"})
    async with group_server(server) as conn:
        result = await _send(conn, "a@example.org")
        assert result.ended is not None
        assert result.answers == {}
        assert not conn.usable(conn.target)


async def test_without_pipelining_offered_each_command_waits_for_its_reply() -> None:
    """The group server answers only at DATA: a client that waits for MAIL's reply before
    sending RCPT times out, so offering PIPELINING is what made the tests above pass."""
    server = GroupServer(pipelining=False)
    async with group_server(server) as conn:
        result = await _send(conn, "a@example.org")
        assert result.ended is not None
        assert "Timeout" in result.ended.described or "Timed out" in result.ended.described


# The shipped sender process runs on uvloop, whose transports (plain and TLS) take the reply
# reader for a transaction and give aiosmtplib's protocol back after it.


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_a_sender_process_pipelines_over_tls(world: World, tmp_path: Path, tls: str) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    sink = SmtpSink(pipelining=True, rcpt_replies={"gone@example.org": "550 5.1.1 No such user"})
    serving = {"starttls": context} if tls == "starttls" else {"implicit_tls": context}
    async with smtp_server(sink, **serving) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port, use_tls=True)
        settings: dict[str, object] = {"smtp_ca_file": ca_file}
        if tls == "implicit":
            settings["smtp_implicit_tls_ports"] = port
        to = ["a@example.org", "gone@example.org", "b@example.org"]
        await world.enqueue("acme", "smtp1", *({"id": f"m{i}", "to": to} for i in range(20)))
        async with sender_processes(1, dsn=world.dsn, key=world.key, log_dir=tmp_path, **settings):
            await eventually(lambda: _all_sent(world, 20), timeout=60)
    assert sorted(sink.mail_ids()) == sorted(f"m{i}" for i in range(20))
    assert all(r.tls and r.rcpt_tos == ["a@example.org", "b@example.org"] for r in sink.received)
    assert sink.pipelined == 20  # every transaction came as one group
    refused = await world.fetchval(
        "SELECT count(*) FROM message_recipients WHERE address = 'gone@example.org' "
        "AND status = 'refused' AND code = 550"
    )
    assert refused == 20


async def _all_sent(world: World, count: int) -> bool:
    states = await world.states("acme")
    return len(states) == count and set(states.values()) == {"sent"}
