"""Real servers on 127.0.0.1 for the sender tests: an SMTP sink (aiosmtpd, in the test's own
event loop) whose behaviour a test can change at any moment, and small HTTP apps (uvicorn) for
sync receivers and attachment sources. Every server is stopped when its block ends.
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

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import serving


@dataclass
class Received:
    """One message the sink got: when its DATA ended (`data_at`) and when it answered 250."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    accepted_at: float
    tls: bool
    data_at: float = 0.0

    @property
    def headers(self) -> Message:
        return BytesHeaderParser().parsebytes(self.data)

    @property
    def mail_id(self) -> str:
        return str(self.headers["X-Genro-Mail-ID"])


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

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
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
        )
        self.attempted.append(got)
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


@contextlib.asynccontextmanager
async def smtp_server(
    sink: SmtpSink,
    *,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    credentials: tuple[str, str] | None = None,
) -> AsyncIterator[int]:
    """Serve `sink` on 127.0.0.1; yields the port."""
    loop = asyncio.get_running_loop()

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            credentials is not None and (data.login.decode(), data.password.decode()) == credentials
        )
        return AuthResult(success=ok, handled=False)

    opened: list[SMTP] = []

    def protocol() -> SMTP:
        sink.connections += 1
        smtp = SMTP(
            sink,
            hostname="sink.test",
            tls_context=starttls,
            require_starttls=False,
            authenticator=authenticate if credentials else None,
            auth_require_tls=False,
            loop=loop,
        )
        opened.append(smtp)
        return smtp

    server = await loop.create_server(protocol, "127.0.0.1", 0, ssl=implicit_tls)
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
