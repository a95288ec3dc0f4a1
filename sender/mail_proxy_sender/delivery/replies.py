# SPDX-License-Identifier: Apache-2.0
"""SMTP replies as a transaction reads them: parsed in order, and checked against the command
they answer (RFC 5321 4.2, 4.3.2).

A reply that does not fit its command (a code that is neither the command's success nor a
4xx/5xx refusal, a malformed line, a reply nobody asked for) means the client and the server are
out of step: that reply cannot be taken as anybody's answer, the session is closed and the
transaction's recipients go to a new session (`OutOfStep`, a `SessionEnded` for the caller).
Taken as an answer instead, a 250 to DATA would mark recipients delivered whose message was
never sent, and one extra reply in a pipelined group would give each recipient its neighbour's
answer.
"""

from __future__ import annotations

import asyncio
from collections import deque

import aiosmtplib
from aiosmtplib.response import SMTPResponse

# One reply, continuation lines included (aiosmtplib's own bound).
REPLY_MAX_BYTES = 32 * 1024

# Success codes by command (RFC 5321 4.3.2); any other 2xx/3xx, or a code outside 200-599,
# answers some other command.
MAIL_OK = frozenset({250})
RCPT_OK = frozenset({250, 251})
DATA_GO_AHEAD = frozenset({354})
END_OF_DATA_OK = frozenset(range(200, 300))


class OutOfStep(aiosmtplib.SMTPServerDisconnected):
    """The server's replies do not fit the commands sent; the session has been closed.

    `answers_void`: no reply of the transaction read so far can be paired with its command, so
    nobody's answer is kept: replies are paired with commands by order only (RFC 2920 3.1 for
    a group; aiosmtplib's buffer one command at a time), and a reply out of place shifts
    every one after it. False once the message was sent after a 354: the replies up to it fit.
    """

    def __init__(self, detail: str, *, answers_void: bool) -> None:
        super().__init__(f"replies out of step with the commands: {detail}")
        self.detail = detail
        self.answers_void = answers_void


def fits(reply: SMTPResponse, success: frozenset[int]) -> bool:
    """`reply` answers a command whose success codes are `success`: one of them, or a 4xx/5xx."""
    return reply.code in success or 400 <= reply.code < 600


class ReplyReader(asyncio.Protocol):
    """The transport's protocol during a pipelined transaction: every reply kept, in order.

    A reply is one line `NNN text` or continuation lines `NNN-text` ending with `NNN text`
    (RFC 5321 4.2). Anything else (a malformed line, a reply longer than `REPLY_MAX_BYTES`, more
    replies than commands sent, see `expect`) ends the reading with `OutOfStep`, raised before
    any reply still queued, and whatever else comes is dropped: memory and CPU stay bounded
    by what was asked for, whatever a server sends. Flow control and a lost connection are
    passed on to `owner`, aiosmtplib's protocol.
    """

    def __init__(self, owner: asyncio.Protocol) -> None:
        self._owner = owner
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer parsed: the whole lines of a reply not ended
        self._lines: list[bytes] = []  # the texts of those lines
        self._replies: deque[SMTPResponse] = deque()
        self._expected = 0  # replies still owed for the commands written
        self._out_of_step: OutOfStep | None = None
        self._ended: aiosmtplib.SMTPException | None = None
        self._wakeup: asyncio.Future[None] | None = None

    def expect(self, replies: int) -> None:
        """`replies` more commands were written: as many more replies are due."""
        self._expected += replies

    @property
    def unread(self) -> bool:
        """Data has come that no reply was read for, or the replies went out of step."""
        return bool(self._replies or self._buffer or self._out_of_step)

    def data_received(self, data: bytes) -> None:
        if self._out_of_step is not None:
            return  # nothing after it can be paired with a command
        self._buffer.extend(data)
        try:
            self._parse()
        except OutOfStep as exc:
            self._out_of_step = exc
            self._buffer.clear()
        self._wake()

    def _parse(self) -> None:
        """Every whole reply in the buffer onto the queue; each line is parsed once, however
        the data is split (a reply a byte at a time costs what it costs at once)."""
        while (end := self._buffer.find(b"\n", self._scanned)) != -1:
            line = bytes(self._buffer[self._scanned : end + 1])
            self._scanned = end + 1
            code, separator = line[:3], line[3:4]
            if not (code.isdigit() and separator in (b" ", b"-", b"\r", b"\n")):
                text = line.decode("utf-8", "replace").strip()
                raise OutOfStep(f"malformed reply line: {text[:200]}", answers_void=True)
            self._lines.append(line[4:].strip(b" \t\r\n"))
            if separator == b"-":
                if self._scanned > REPLY_MAX_BYTES:
                    raise OutOfStep("reply too long", answers_void=True)
                continue
            message = b"\n".join(self._lines).decode("utf-8", "surrogateescape")
            del self._buffer[: self._scanned]
            self._scanned, self._lines = 0, []
            if self._expected == 0:
                raise OutOfStep(f"a reply no command asked for: {code.decode()}", answers_void=True)
            self._expected -= 1
            self._replies.append(SMTPResponse(int(code), message))
        if len(self._buffer) > REPLY_MAX_BYTES:
            raise OutOfStep("reply too long", answers_void=True)

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
        """The next reply; the replies that came before a hang-up are still read first, none
        after the replies went out of step (`OutOfStep`)."""
        try:
            async with asyncio.timeout(within_seconds):
                while not self._replies or self._out_of_step is not None:
                    if self._out_of_step is not None:
                        raise self._out_of_step
                    if self._ended is not None:
                        raise self._ended
                    self._wakeup = asyncio.get_running_loop().create_future()
                    await self._wakeup
        except TimeoutError as exc:
            raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from exc
        finally:
            self._wakeup = None
        return self._replies.popleft()
