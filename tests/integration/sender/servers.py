"""Real servers on 127.0.0.1 for the sender tests: an SMTP sink (aiosmtpd, in the test's own
event loop) whose behaviour a test can change at any moment, and small HTTP apps (uvicorn) for
sync receivers and attachment sources. Every server is stopped when its block ends.

The sink behaves like the strict servers found in the field (issue 10):
- RFC 5321 4.5.3.1.6: a DATA line over 998 octets (plus CRLF) is answered `500 Line too long`;
- chosen answers per recipient (`rcpt_replies`: 550, 451, ...) and `too_many_reply` (`452
  4.5.3 ...`) after `max_recipients` RCPTs in one transaction or `session_max_recipients` in
  one session;
- a recipient whose RCPT ends the session: answered and hung up (`rcpt_hangups`: address ->
  reply, None for a silent hang-up) or never answered (`rcpt_stalls`, until the client times
  out); `error_limit` RCPT errors per session, then `421 ... too many errors` and a hang-up
  (Postfix's `smtpd_hard_error_limit`);
- `421` and a hang-up at connect, MAIL, RCPT or DATA (`hangup_at`);
- SMTPUTF8 only when `smtputf8` is set (else a non-ASCII address is a `500`);
- STARTTLS or implicit TLS with any certificate (`untrusted_tls_context()` for one nobody
  trusts), authentication (`credentials`, else `535`);
- `active`/`peak_active`: connections open now and at most at once;
- PIPELINING (RFC 2920) offered when `pipelining` is set, or by default while
  `PIPELINING_BY_DEFAULT` is (the `either_exchange` fixture runs a test both ways);
  `pipelined` counts the transactions whose MAIL came with its DATA in the same read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import serving

# Whether a sink offers PIPELINING when its test does not say (see the module doc).
PIPELINING_BY_DEFAULT = False


@dataclass
class Received:
    """One message the sink got: when its DATA ended (`data_at`) and when it answered 250."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    accepted_at: float
    tls: bool
    data_at: float = 0.0
    smtputf8: bool = False

    @property
    def headers(self) -> Message:
        return BytesHeaderParser().parsebytes(self.data)

    @property
    def mail_id(self) -> str:
        return str(self.headers["X-Genro-Mail-ID"])


def _utf8(address: str) -> str:
    """aiosmtpd hands non-ASCII addresses over as surrogate escapes; show them as text."""
    return address.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass
class SmtpSink:
    """The handler: accepts by default; `reply`, `delay_seconds`, `drop` change that."""

    received: list[Received] = field(default_factory=list)
    reply: str | None = None  # e.g. "451 4.7.1 Try later": answered to DATA instead of 250
    rcpt_reply: str | None = None  # answered to RCPT TO
    delay_seconds: float = 0.0
    drop: bool = False  # close the connection instead of answering DATA
    connections: int = 0
    attempted: list[Received] = field(default_factory=list)  # every DATA, whatever the answer
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # Strict-server behaviours (see the module doc).
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> answer to RCPT
    max_recipients: int | None = None  # then `too_many_reply`
    session_max_recipients: int | None = None  # accepted RCPTs per session, then the same
    too_many_reply: str = "452 4.5.3 Too many recipients"
    rcpt_hangups: dict[str, str | None] = field(default_factory=dict)  # reply, then hang up
    rcpt_stalls: set[str] = field(default_factory=set)  # never answered
    error_limit: int | None = None  # RCPT errors per session, then 421 and hang up
    hangup_at: str | None = None  # "connect" | "mail" | "rcpt" | "data": answer 421, hang up
    hangup_reply: str = "421 4.3.2 Service shutting down"
    hangups_left: int | None = None  # how many more hang-ups (None: every time)
    smtputf8: bool = False  # offer SMTPUTF8
    mail_reply: str | None = None  # answered to MAIL FROM
    rcpts_seen: list[str] = field(default_factory=list)  # every RCPT TO, whatever the answer
    active: int = 0  # connections open now
    peak_active: int = 0  # most connections open at once
    connection_limit: int | None = None  # beyond it, a new connection gets 421, hang-up
    refused_connections: int = 0
    gate: asyncio.Event | None = None  # DATA is answered only once it is set
    pipelining: bool | None = None  # offer PIPELINING; None: PIPELINING_BY_DEFAULT
    pipelined: int = 0  # transactions whose DATA was already in when MAIL was handled

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        offered = PIPELINING_BY_DEFAULT if self.pipelining is None else self.pipelining
        if offered:
            responses.insert(-1, "250-PIPELINING")
        return responses

    def _hangup(self, server: SMTP, stage: str) -> str | None:
        if self.hangup_at != stage or self.hangups_left == 0:
            return None
        if self.hangups_left is not None:
            self.hangups_left -= 1
        transport = server.transport
        if transport is not None:
            asyncio.get_running_loop().call_soon(transport.close)
        return self.hangup_reply

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if b"DATA\r\n" in bytes(getattr(server._reader, "_buffer", b"")):
            self.pipelined += 1  # asyncio.StreamReader's buffer: what came with this MAIL
        if (reply := self._hangup(server, "mail")) is not None:
            return reply
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = _utf8(address)
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        address = _utf8(address)
        self.rcpts_seen.append(address)
        if (reply := self._hangup(server, "rcpt")) is not None:
            return reply
        if address in self.rcpt_hangups:
            reply, transport = self.rcpt_hangups[address], server.transport
            if transport is not None and reply is None:
                transport.close()  # silent: nothing is written after this
            elif transport is not None:
                asyncio.get_running_loop().call_soon(transport.close)
            return reply or "421 gone"
        if address in self.rcpt_stalls:
            await asyncio.sleep(3600)
        reply = self._rcpt_reply(session, envelope, address)
        if not reply.startswith("2"):
            session.rcpt_errors = getattr(session, "rcpt_errors", 0) + 1
            if self.error_limit is not None and session.rcpt_errors > self.error_limit:
                # Postfix's smtpd_hard_error_limit: too many errors end the session.
                transport = server.transport
                if transport is not None:
                    asyncio.get_running_loop().call_soon(transport.close)
                return "421 4.7.0 Error: too many errors"
        return reply

    def _rcpt_reply(self, session: Session, envelope: Envelope, address: str) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        if self.max_recipients is not None and len(envelope.rcpt_tos) >= self.max_recipients:
            return self.too_many_reply
        accepted = getattr(session, "accepted_rcpts", 0)
        if self.session_max_recipients is not None and accepted >= self.session_max_recipients:
            return self.too_many_reply
        session.accepted_rcpts = accepted + 1
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        got = Received(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(envelope.original_content or b""),
            accepted_at=time.time(),
            tls=server.transport is not None
            and server.transport.get_extra_info("ssl_object") is not None,
            data_at=time.time(),
            smtputf8=bool(envelope.smtp_utf8),
        )
        self.attempted.append(got)
        if (reply := self._hangup(server, "data")) is not None:
            return reply
        if self.gate is not None:
            await self.gate.wait()
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.drop:
            assert server.transport is not None
            server.transport.close()
            return "421 closing"
        if self.reply:
            return self.reply
        if server.transport is None or server.transport.is_closing():
            return "451 gone"  # the client died while we were slow: nothing was accepted
        got.accepted_at = time.time()
        self.received.append(got)
        self.arrived.set()
        return "250 OK queued"

    def mail_ids(self) -> list[str]:
        return [r.mail_id for r in self.received]


def untrusted_tls_context() -> ssl.SSLContext:
    """A server TLS context with a certificate from a CA that nobody trusts."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


class _Strict(SMTP):  # type: ignore[misc]
    """aiosmtpd with the RFC 5321 line limit exactly (998 octets + CRLF) and a connection count."""

    line_length_limit = 1000

    def __init__(self, sink: SmtpSink, **kwargs: Any) -> None:
        super().__init__(sink, enable_SMTPUTF8=sink.smtputf8, **kwargs)
        self._sink = sink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Counted when the connection is accepted (the factory runs for every connection in
        # a burst before any of them is "made"), so `connection_limit` sees the true number.
        self._sink.peak_active = max(self._sink.peak_active, self._sink.active)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._sink.active -= 1
        super().connection_lost(exc)


class _RefuseAtConnect(asyncio.Protocol):
    """Answers the greeting with `reply` and hangs up (a server that is full or rate-limits)."""

    def __init__(self, reply: str) -> None:
        self._reply = reply

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(f"{self._reply}\r\n".encode())
        transport.close()


@contextlib.asynccontextmanager
async def smtp_server(
    sink: SmtpSink,
    *,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    credentials: tuple[str, str] | None = None,
    port: int = 0,
) -> AsyncIterator[int]:
    """Serve `sink` on 127.0.0.1 (on `port`, else a free one); yields the port."""
    loop = asyncio.get_running_loop()

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            credentials is not None and (data.login.decode(), data.password.decode()) == credentials
        )
        return AuthResult(success=ok, handled=False)

    opened: list[SMTP] = []

    def protocol() -> asyncio.Protocol:
        sink.connections += 1
        if sink.connection_limit is not None and sink.active >= sink.connection_limit:
            sink.refused_connections += 1
            return _RefuseAtConnect("421 4.7.0 Too many connections, try later")
        if sink.hangup_at == "connect" and sink.hangups_left != 0:
            if sink.hangups_left is not None:
                sink.hangups_left -= 1
            return _RefuseAtConnect(sink.hangup_reply)
        sink.active += 1
        smtp = _Strict(
            sink,
            hostname="sink.test",
            tls_context=starttls,
            require_starttls=False,
            authenticator=authenticate if credentials else None,
            # A server without credentials offers no AUTH on a plain session (as relays that
            # take mail without login do); one with credentials offers it without TLS too.
            auth_require_tls=credentials is None,
            loop=loop,
        )
        opened.append(smtp)
        return smtp

    server = await loop.create_server(protocol, "127.0.0.1", port, ssl=implicit_tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for smtp in opened:
            if smtp.transport is not None:
                smtp.transport.close()
        await server.wait_closed()
        await asyncio.sleep(0.05)  # let the closed sessions finish their tasks


Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class HttpApp:
    """A recording HTTP server: every request is kept; `routes` map a path to a handler."""

    routes: dict[str, Handler] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hits(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]


@contextlib.asynccontextmanager
async def http_server(app: HttpApp) -> AsyncIterator[HttpApp]:
    async def dispatch(request: Request) -> Response:
        body = await request.body()
        app.requests.append(
            Recorded(request.method, request.url.path, dict(request.headers), body, time.time())
        )
        handler = app.routes.get(request.url.path)
        if handler is None:
            return Response(status_code=404)
        return await handler(request)

    starlette = Starlette(routes=[Route("/{path:path}", dispatch, methods=["GET", "POST"])])
    async with serving(starlette) as port:
        app.port = port
        yield app
