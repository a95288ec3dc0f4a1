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
close the session on a hang-up, a timeout or a 421, as aiosmtplib does.

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

# RFC 2920 lets a client pipeline any number of RCPTs; a server must take 100 per transaction
# (RFC 5321 4.5.3.1.8). Beyond that a message goes one command at a time, so that a server's
# "too many recipients" answers are not collected by the hundred (each is an error that can
# end the session, e.g. Postfix's smtpd_hard_error_limit).
PIPELINED_RECIPIENTS_MAX = 100
# One reply, continuation lines included (aiosmtplib's own bound).
_REPLY_MAX_BYTES = 32 * 1024
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


class RecipientLimits:
    """How many recipients each server (host, port) took in one transaction before answering
    "too many" to a pipelined group, as learned this process's life (bounded, least recently
    used forgotten first). A larger group goes one command at a time, where the recipients
    past the limit are never named: a server that hangs up after a few errors (Postfix's
    smtpd_hard_error_limit without its overshoot allowance) costs one session, not every one.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._limits: OrderedDict[tuple[str, int], int] = OrderedDict()

    def pipelines(self, server: tuple[str, int], recipients: int) -> bool:
        limit = self._limits.get(server)
        return recipients <= (PIPELINED_RECIPIENTS_MAX if limit is None else limit)

    def learn(self, server: tuple[str, int], accepted: int) -> None:
        """`accepted` recipients were taken before "too many"; none says nothing of the
        transaction (the session's own limit was reached)."""
        if accepted <= 0:
            return
        self._limits[server] = min(accepted, self._limits.get(server, accepted))
        self._limits.move_to_end(server)
        while len(self._limits) > self._size:
            self._limits.popitem(last=False)


class Commands(Protocol):
    """The words of a transaction's MAIL command and of each RCPT (RFC 5321 4.1.1.2-3); either
    raises `ValueError` for an address that cannot be put on a command line."""

    def mail(self) -> list[bytes]: ...

    def rcpt(self, index: int) -> list[bytes]: ...

    @property
    def recipients(self) -> int: ...


class Sequential:
    """One command at a time through aiosmtplib; each command is made when it is sent, so an
    address that cannot be written fails at its own command."""

    def __init__(self, client: aiosmtplib.SMTP, commands: Commands, data_timeout: float) -> None:
        self._client, self._commands = client, commands
        self._data_timeout = data_timeout

    async def mail(self) -> SMTPResponse:
        return await self._client.execute_command(*self._commands.mail())

    async def rcpt(self, index: int) -> SMTPResponse:
        return await self._client.execute_command(*self._commands.rcpt(index))

    async def data(self, message: bytes) -> SMTPResponse:
        return await self._client.data(message, timeout=self._data_timeout)

    async def abandon(self) -> None:
        return None

    def finish(self) -> None:
        return None


class ReplyReader(asyncio.Protocol):
    """The transport's protocol during a pipelined transaction: every reply kept, in order.

    A reply is one line `NNN text` or continuation lines `NNN-text` ending with `NNN text`
    (RFC 5321 4.2); anything else is a malformed reply (code -1, as aiosmtplib's). Flow control
    and a lost connection are passed on to `owner`, aiosmtplib's protocol.
    """

    def __init__(self, owner: asyncio.Protocol) -> None:
        self._owner = owner
        self._buffer = bytearray()
        self._replies: deque[SMTPResponse] = deque()
        self._ended: aiosmtplib.SMTPException | None = None
        self._wakeup: asyncio.Future[None] | None = None

    @property
    def unread(self) -> bool:
        """Data has come that no reply was read for."""
        return bool(self._replies or self._buffer)

    def data_received(self, data: bytes) -> None:
        self._buffer.extend(data)
        try:
            while (reply := self._parse()) is not None:
                self._replies.append(reply)
        except aiosmtplib.SMTPResponseException as exc:
            self._ended = exc
        self._wake()

    def _parse(self) -> SMTPResponse | None:
        """The first whole reply in the buffer, taken out of it; None while it is incomplete."""
        start, texts = 0, []
        while (end := self._buffer.find(b"\n", start)) != -1:
            line = bytes(self._buffer[start : end + 1])
            start = end + 1
            code, separator = line[:3], line[3:4]
            if not (code.isdigit() and separator in (b" ", b"-", b"\r", b"\n")):
                text = line.decode("utf-8", "replace").strip()
                raise aiosmtplib.SMTPResponseException(-1, f"Malformed SMTP response line: {text}")
            texts.append(line[4:].strip(b" \t\r\n"))
            if separator != b"-":
                del self._buffer[:start]
                message = b"\n".join(texts).decode("utf-8", "surrogateescape")
                return SMTPResponse(int(code), message)
        if len(self._buffer) > _REPLY_MAX_BYTES:
            raise aiosmtplib.SMTPResponseException(-1, "Response too long")
        return None

    def eof_received(self) -> bool:
        self._end(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(aiosmtplib.SMTPServerDisconnected("Connection lost"))
        self._owner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._owner.pause_writing()

    def resume_writing(self) -> None:
        self._owner.resume_writing()

    def _end(self, exc: aiosmtplib.SMTPException) -> None:
        if self._ended is None:
            self._ended = exc
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def reply(self, within_seconds: float) -> SMTPResponse:
        """The next reply; the replies that came before a hang-up are still read first."""
        try:
            async with asyncio.timeout(within_seconds):
                while not self._replies:
                    if self._ended is not None:
                        raise self._ended
                    self._wakeup = asyncio.get_running_loop().create_future()
                    await self._wakeup
        except TimeoutError as exc:
            raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from exc
        finally:
            self._wakeup = None
        return self._replies.popleft()


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
        if protocol is None or protocol.transport is None:
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        self._client = client
        self._owner = protocol
        self._transport = cast(asyncio.WriteTransport, protocol.transport)
        self._reader = ReplyReader(protocol)
        self._timeout, self._data_timeout = timeout, data_timeout
        self._due = len(group)  # replies not read yet
        self._finished = False
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

    async def _next(self, within_seconds: float) -> SMTPResponse:
        if self._client.protocol is None:
            # Closed by us (a 421, a late reply): nothing more is read on this session.
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        try:
            reply = await self._reader.reply(within_seconds)
        except aiosmtplib.SMTPException:
            self._client.close()  # out of step or gone: never read on after this
            raise
        self._due -= 1
        if reply.code == 421:
            self._client.close()  # the server is closing the session (RFC 5321 3.8)
        return reply

    def _write(self, data: bytes) -> None:
        if self._transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._transport.write(data)

    async def mail(self) -> SMTPResponse:
        return await self._next(self._timeout)

    async def rcpt(self, index: int) -> SMTPResponse:
        return await self._next(self._timeout)

    async def data(self, message: bytes) -> SMTPResponse:
        start = await self._next(self._timeout)
        if start.code != 354:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        body = _LINE_START_DOT.sub(b"..", normalize_message_line_endings(message))
        self._write(body + b".\r\n")
        self._due += 1
        reply = await self._next(self._data_timeout)
        if reply.code != 250:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        return reply

    async def abandon(self) -> None:
        try:
            while self._due:
                reply = await self._next(self._timeout)
                if self._due == 0 and reply.code == 354:
                    # DATA was let through without a recipient: an empty message ends it, the
                    # server refuses it for want of recipients (RFC 2920 3.1).
                    self._write(b".\r\n")
                    self._due += 1
        except aiosmtplib.SMTPException:
            self._client.close()

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._transport.is_closing():
            return  # the loss reaches aiosmtplib's protocol through the reader
        if self._due or self._reader.unread:
            # A reply still due (cancelled, or left unread) would be taken for the next
            # command's: the session cannot go on.
            self._client.close()
            return
        self._transport.set_protocol(self._owner)
