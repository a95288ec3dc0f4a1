# SPDX-License-Identifier: Apache-2.0
"""How one transaction's commands reach the server and its replies come back (RFC 5321 3.3).

`Sequential` sends MAIL, each RCPT and DATA one at a time, each after the previous reply, through
aiosmtplib. `Pipelined` (RFC 2920, used when the server offers PIPELINING) writes MAIL, every RCPT
and DATA at once and then reads their replies in order: one round trip instead of one per
command, which against a relay that is far away or slow to answer is most of a message's time
on a connection.

Both hand `SmtpConnection.transaction` the same replies in the same order and raise the same
aiosmtplib exceptions (`SMTPServerDisconnected` for a hang-up, `SMTPReadTimeoutError` for a late
reply, `SMTPDataError` for a DATA refused), so an answer means the same however it came. Both
close the session on a hang-up, a timeout or a 421, as aiosmtplib does, and on a reply that does
not fit its command (`replies.OutOfStep`: in a group, every answer of it is void then).

aiosmtplib reads one reply per command it wrote and drops data that arrives before it asks, so
a pipelined group's replies are read by a `ReplyReader`, the transport's protocol for the length
of one transaction; aiosmtplib's protocol is put back after it (the session goes on with RSET,
QUIT and the next transaction), and a connection lost meanwhile is passed on to it, so the
client knows the session is over.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict, deque
from typing import Protocol, cast

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings
from aiosmtplib.response import SMTPResponse

from mail_proxy_sender.delivery.replies import (
    DATA_GO_AHEAD,
    END_OF_DATA_OK,
    MAIL_OK,
    RCPT_OK,
    OutOfStep,
    ReplyReader,
    fits,
)

# RFC 2920 lets a client pipeline any number of RCPTs; a server must take 100 per transaction
# (RFC 5321 4.5.3.1.8). Beyond that a message goes one command at a time, so that a server's
# "too many recipients" answers are not collected by the hundred (each is an error that can
# end the session, e.g. Postfix's smtpd_hard_error_limit).
PIPELINED_RECIPIENTS_MAX = 100
# Control characters in a command would let an address inject a command (as aiosmtplib checks).
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_LINE_START_DOT = re.compile(rb"(?m)^\.")


class Exchange(Protocol):
    """The replies of one transaction's commands, in order (see the module doc)."""

    async def mail(self) -> SMTPResponse: ...

    async def rcpt(self, index: int) -> SMTPResponse: ...

    async def data(self, message: bytes) -> SMTPResponse:
        """DATA and the message: the end-of-data reply; `SMTPDataError` when either is refused."""
        ...

    async def abandon(self) -> None:
        """No DATA after all (MAIL refused, no recipient accepted): whatever the server still
        owes is read, so that RSET and the next transaction start in step."""
        ...

    def finish(self) -> None:
        """The transaction is over, however it ended; the session is left in step or closed."""
        ...


Server = tuple[str, int, str | None]  # host, port, login: a provider's limit can be per login


class RecipientLimits:
    """How many recipients each server (host, port and login) took in one transaction before
    answering "too many" to a pipelined group, as learned this process's life (bounded, least
    recently used forgotten first). A larger group goes one command at a time, where the
    recipients past the limit are never named: a server that hangs up after a few errors
    (Postfix's smtpd_hard_error_limit without its overshoot allowance) costs one session, not
    every one. Learned only from a session's first transaction (later ones may meet the
    session's limit, not the transaction's), and forgotten once a larger group is taken whole
    (the server's limit was raised, or it was the session's after all).
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._limits: OrderedDict[Server, int] = OrderedDict()

    def pipelines(self, server: Server, recipients: int) -> bool:
        limit = self._limits.get(server)
        return recipients <= (PIPELINED_RECIPIENTS_MAX if limit is None else limit)

    def learn(self, server: Server, accepted: int) -> None:
        """`accepted` recipients were taken before "too many" in a session's first
        transaction; none says nothing of the transaction (the session's own limit)."""
        if accepted <= 0:
            return
        self._limits[server] = min(accepted, self._limits.get(server, accepted))
        self._limits.move_to_end(server)
        while len(self._limits) > self._size:
            self._limits.popitem(last=False)

    def took(self, server: Server, named: int) -> None:
        """A message was taken in a transaction that named `named` recipients, none of them
        answered "too many"."""
        limit = self._limits.get(server)
        if limit is not None and named > limit:
            del self._limits[server]


class Commands(Protocol):
    """The words of a transaction's MAIL command and of each RCPT (RFC 5321 4.1.1.2-3); either
    raises `ValueError` for an address that cannot be put on a command line."""

    def mail(self) -> list[bytes]: ...

    def rcpt(self, index: int) -> list[bytes]: ...

    @property
    def recipients(self) -> int: ...


class Sequential:
    """One command at a time through aiosmtplib; each command is made when it is sent, so an
    address that cannot be written fails at its own command. A reply that does not fit its
    command closes the session (`OutOfStep`; aiosmtplib would read on, a malformed line still
    in its buffer)."""

    def __init__(self, client: aiosmtplib.SMTP, commands: Commands, data_timeout: float) -> None:
        self._client, self._commands = client, commands
        self._data_timeout = data_timeout
        self._owed = False  # a command was written and its reply not read (see `finish`)

    async def mail(self) -> SMTPResponse:
        return await self._command(self._commands.mail(), MAIL_OK)

    async def rcpt(self, index: int) -> SMTPResponse:
        return await self._command(self._commands.rcpt(index), RCPT_OK)

    async def _command(self, words: list[bytes], success: frozenset[int]) -> SMTPResponse:
        try:
            self._owed = True
            reply = await self._client.execute_command(*words)
            self._owed = False
        except aiosmtplib.SMTPResponseException as exc:  # malformed or too long (code -1)
            self._client.close()
            raise OutOfStep(exc.message[:200], answers_void=True) from exc
        return self._checked(reply, success, answers_void=True)

    def _checked(
        self, reply: SMTPResponse, success: frozenset[int], *, answers_void: bool
    ) -> SMTPResponse:
        """`reply`, when it fits its command; else the session is closed. Before the message
        is sent, the transaction's earlier replies are void too: aiosmtplib keeps a second
        reply that came with the first for the next command, so one reply too many pairs
        every later command with its predecessor's reply here as well."""
        if not fits(reply, success):
            self._client.close()
            raise OutOfStep(f"{reply.code} {reply.message[:200]}", answers_void=answers_void)
        return reply

    async def data(self, message: bytes) -> SMTPResponse:
        """DATA, then the message once the server said 354 (aiosmtplib's `SMTP.data` would take
        a 250 to DATA for the end-of-data reply of a message it never sent)."""
        start = await self._command([b"DATA"], DATA_GO_AHEAD)
        if start.code != 354:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        protocol = self._client.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        try:
            self._owed = True
            protocol.write(_body(message))
            reply = await protocol.read_response(timeout=self._data_timeout)
            self._owed = False
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self._client.close()
            raise
        except aiosmtplib.SMTPResponseException as exc:
            self._client.close()
            raise OutOfStep(exc.message[:200], answers_void=False) from exc
        if self._checked(reply, END_OF_DATA_OK, answers_void=False).code == 421:
            self._client.close()  # the server is closing the session (RFC 5321 3.8)
        if reply.code >= 400:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        return reply

    async def abandon(self) -> None:
        return None

    def finish(self) -> None:
        if self._owed:
            # Cancelled while a reply was owed: arriving late, it would be taken for the next
            # command's (aiosmtplib only drops what comes while nothing is asked).
            self._client.close()


class Pipelined:
    """MAIL, every RCPT and DATA written at once, their replies read in order (RFC 2920)."""

    def __init__(
        self,
        client: aiosmtplib.SMTP,
        group: list[bytes],
        timeout: float,
        data_timeout: float,
    ) -> None:
        """Writes `group` (see `group`) at once; raises `SMTPServerDisconnected` when the
        session is already closed."""
        protocol = client.protocol
        if protocol is None or protocol.transport is None or protocol.transport.is_closing():
            # Closing (a hang-up seen, its loss not delivered yet): nothing to write to.
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        self._client = client
        self._owner = protocol
        self._transport = cast(asyncio.WriteTransport, protocol.transport)
        self._reader = ReplyReader(protocol)
        self._timeout, self._data_timeout = timeout, data_timeout
        # The success codes of each reply not read yet, in order: MAIL, each RCPT, DATA.
        self._owed: deque[frozenset[int]] = deque(
            [MAIL_OK, *(RCPT_OK for _ in group[1:-1]), DATA_GO_AHEAD]
        )
        self._finished = False
        self._reader.expect(len(group))
        self._transport.set_protocol(self._reader)
        self._transport.write(b"".join(group))

    @staticmethod
    def group(commands: Commands) -> list[bytes] | None:
        """The command lines of the group, DATA last (RFC 2920 3.1); None when a command cannot
        be written (an address refused by the quoting, a control character): the transaction
        then goes one command at a time, where that command fails as it always has."""
        try:
            words = [commands.mail(), *(commands.rcpt(i) for i in range(commands.recipients))]
        except (ValueError, UnicodeError):
            return None
        if any(_CONTROL.search(word) for command in words for word in command):
            return None
        return [b" ".join(command) + b"\r\n" for command in words] + [b"DATA\r\n"]

    async def _next(self, within_seconds: float, *, after_body: bool = False) -> SMTPResponse:
        """The next reply owed, checked against its command (`replies.fits`). Before the
        message is sent, an out-of-step reply voids every answer of the group; after it, the
        replies up to DATA's 354 fitted, so only whether the message was taken is unknown."""
        if self._client.protocol is None:
            # Closed by us (a 421, a late reply): nothing more is read on this session.
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        try:
            reply = await self._reader.reply(within_seconds)
            # Owed until read: a transaction cancelled meanwhile leaves it owed (`finish`).
            if not fits(reply, self._owed.popleft()):
                raise OutOfStep(f"{reply.code} {reply.message[:200]}", answers_void=True)
        except OutOfStep as exc:
            self._client.close()
            if after_body:
                raise OutOfStep(exc.detail, answers_void=False) from exc
            raise
        except aiosmtplib.SMTPException:
            self._client.close()  # gone or late: never read on after this
            raise
        if reply.code == 421:
            self._client.close()  # the server is closing the session (RFC 5321 3.8)
        return reply

    def _write(self, data: bytes, success: frozenset[int]) -> None:
        if self._transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._owed.append(success)
        self._reader.expect(1)
        self._transport.write(data)

    async def mail(self) -> SMTPResponse:
        return await self._next(self._timeout)

    async def rcpt(self, index: int) -> SMTPResponse:
        return await self._next(self._timeout)

    async def data(self, message: bytes) -> SMTPResponse:
        start = await self._next(self._timeout)
        if start.code != 354:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        self._write(_body(message), END_OF_DATA_OK)
        reply = await self._next(self._data_timeout, after_body=True)
        if reply.code >= 400:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        return reply

    async def abandon(self) -> None:
        try:
            while self._owed:
                reply = await self._next(self._timeout)
                if not self._owed and reply.code == 354:
                    # DATA was let through without a recipient: an empty message ends it, the
                    # server refuses it for want of recipients (RFC 2920 3.1).
                    self._write(b".\r\n", END_OF_DATA_OK)
        except OutOfStep:
            raise  # the answers read so far are nobody's
        except aiosmtplib.SMTPException:
            self._client.close()

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._transport.is_closing():
            return  # the loss reaches aiosmtplib's protocol through the reader
        if self._owed or self._reader.unread:
            # A reply still due (cancelled, or left unread) would be taken for the next
            # command's: the session cannot go on.
            self._client.close()
            return
        self._transport.set_protocol(self._owner)


def _body(message: bytes) -> bytes:
    """The message as sent after DATA's 354: CRLF line ends, dot-stuffed, ended by a lone dot
    (RFC 5321 4.5.2, 4.1.1.4)."""
    return _LINE_START_DOT.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"
