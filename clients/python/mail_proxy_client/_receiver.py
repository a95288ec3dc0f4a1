# SPDX-License-Identifier: Apache-2.0
"""Receiving delivery reports (mail-proxy's sync protocol) in any Python web app.

mail-proxy POSTs `{"delivery_report": [items]}` to the tenant's `client_base_url` +
`client_sync_path` with the tenant's `client_auth` (bearer or basic), and reads back
`{"ok": true, "queued": N, "next_sync_after": T}` (reference §5). `ReportReceiver` checks the
credentials (constant-time), parses every item into a `ReportItem`, calls your callback for its
kind (`on_sent`, `on_error`, `on_deferred`, `on_bounce`, `on_pec`; plain or async functions),
and answers. It serves as an ASGI app (`receiver.asgi`, for FastAPI/Starlette:
`app.add_route(path, receiver.asgi)`),
a WSGI app (`receiver.wsgi`, for Flask/Django: `DispatcherMiddleware`), or framework-free
(`handle`/`handle_async` from a view of your own).

Answers: 200 with the `ReportAnswer`; 401 for missing or wrong credentials; 400 for a body that
is not a delivery report; 405 for anything but POST; 500 when a callback raised (the items are
then sent again later, so callbacks must be idempotent). An empty report is a heartbeat.
"""

from __future__ import annotations

import base64
import hmac
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pydantic import ValidationError

from mail_proxy_client._models import ReportAnswer, ReportItem

log = logging.getLogger(__name__)

Callback = Callable[[ReportItem], Any]
# `queued()` tells mail-proxy how many messages the app still has to hand it (0 by default).
QueuedCallback = Callable[[], int | Awaitable[int]]
_MAX_BODY_BYTES = 64 * 1024 * 1024


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ReportReceiver:
    """Checks, parses and dispatches delivery reports; see the module docstring."""

    def __init__(
        self,
        *,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        on_sent: Callback | None = None,
        on_error: Callback | None = None,
        on_deferred: Callback | None = None,
        on_bounce: Callback | None = None,
        on_pec: Callback | None = None,
        on_report: Callable[[list[ReportItem]], Any] | None = None,
        queued: QueuedCallback | None = None,
        allow_unauthenticated: bool = False,
    ) -> None:
        if bearer_token is None and basic_auth is None and not allow_unauthenticated:
            raise ValueError(
                "give bearer_token or basic_auth (the tenant's client_auth), or "
                "allow_unauthenticated=True to accept reports from anyone"
            )
        self._expected: list[str] = []
        if bearer_token:
            self._expected.append(f"Bearer {bearer_token}")
        if basic_auth:
            raw = f"{basic_auth[0]}:{basic_auth[1]}".encode()
            self._expected.append("Basic " + base64.b64encode(raw).decode())
        self._callbacks: dict[str, Callback | None] = {
            "sent": on_sent,
            "error": on_error,
            "deferred": on_deferred,
            "bounce": on_bounce,
            "pec": on_pec,
        }
        self._on_report = on_report
        self._queued = queued

    # -- the protocol, framework-free --------------------------------------------------------

    def _check(self, authorization: str | None) -> None:
        if not self._expected:
            return
        given = (authorization or "").encode()
        if not any(hmac.compare_digest(given, e.encode()) for e in self._expected):
            raise _Refused(401, "invalid or missing credentials")

    @staticmethod
    def parse(body: bytes) -> list[ReportItem]:
        """The items of a delivery report body; `ValueError` when it is not one."""
        try:
            data = json.loads(body or b"null")
        except ValueError as exc:
            raise ValueError(f"body is not JSON: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("delivery_report"), list):
            raise ValueError('expected {"delivery_report": [...]}')
        try:
            return [ReportItem.model_validate(item) for item in data["delivery_report"]]
        except ValidationError as exc:
            raise ValueError(f"invalid report item: {exc.errors()[0]['msg']}") from exc

    def _items(self, body: bytes, authorization: str | None) -> list[ReportItem]:
        self._check(authorization)
        if len(body) > _MAX_BODY_BYTES:
            raise _Refused(413, "report too large")
        try:
            return self.parse(body)
        except ValueError as exc:
            raise _Refused(400, str(exc)) from exc

    def _calls(self, items: list[ReportItem]) -> Iterable[tuple[Callable[..., Any], Any]]:
        if self._on_report is not None:
            yield self._on_report, items
        for item in items:
            callback = self._callbacks[item.kind]
            if callback is not None:
                yield callback, item

    def handle(self, body: bytes, authorization: str | None) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer) for one request; callbacks are called synchronously."""
        try:
            items = self._items(body, authorization)
            for callback, arg in self._calls(items):
                result = callback(arg)
                if inspect.isawaitable(result):
                    raise TypeError("async callbacks need the ASGI app or handle_async")
            queued = self._queued() if self._queued else 0
            if inspect.isawaitable(queued):
                raise TypeError("an async queued() needs the ASGI app or handle_async")
        except _Refused as exc:
            return exc.status, {"ok": False, "detail": exc.detail}
        except Exception:
            log.exception("delivery report callback failed")
            return 500, {"ok": False, "detail": "report not processed; send it again"}
        return 200, ReportAnswer(queued=int(queued)).model_dump(exclude_none=True)

    async def handle_async(
        self, body: bytes, authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        """As `handle`, awaiting async callbacks."""
        try:
            items = self._items(body, authorization)
            for callback, arg in self._calls(items):
                result = callback(arg)
                if inspect.isawaitable(result):
                    await result
            queued: Any = self._queued() if self._queued else 0
            if inspect.isawaitable(queued):
                queued = await queued
        except _Refused as exc:
            return exc.status, {"ok": False, "detail": exc.detail}
        except Exception:
            log.exception("delivery report callback failed")
            return 500, {"ok": False, "detail": "report not processed; send it again"}
        return 200, ReportAnswer(queued=int(queued)).model_dump(exclude_none=True)

    # -- adapters ------------------------------------------------------------------------------

    @property
    def asgi(self) -> _AsgiApp:
        """This receiver as an ASGI app: `app.add_route("/mail-proxy/sync", receiver.asgi)`."""
        return _AsgiApp(self)

    async def serve_asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI protocol itself (what `asgi` runs)."""
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            status, answer = 405, {"ok": False, "detail": "POST a delivery report"}
        else:
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                message = await receive()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size <= _MAX_BODY_BYTES:
                    chunks.append(chunk)
                more = message.get("more_body", False)
            auth = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            body = b"".join(chunks) if size <= _MAX_BODY_BYTES else b"x" * (_MAX_BODY_BYTES + 1)
            status, answer = await self.handle_async(body, auth or None)
        payload = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """This receiver as a WSGI app (mount it where mail-proxy posts, `client_sync_path`)."""
        if environ.get("REQUEST_METHOD") != "POST":
            status, answer = 405, {"ok": False, "detail": "POST a delivery report"}
        else:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > _MAX_BODY_BYTES:
                status, answer = 413, {"ok": False, "detail": "report too large"}
            else:
                body = environ["wsgi.input"].read(length) if length > 0 else b""
                status, answer = self.handle(body, environ.get("HTTP_AUTHORIZATION"))
        payload = json.dumps(answer).encode()
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 405: "Method Not Allowed"}
        start_response(
            f"{status} {reason.get(status, 'Error')}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]


class _AsgiApp:
    """An ASGI app object (not a function), so Starlette/FastAPI routes run it as an app."""

    def __init__(self, receiver: ReportReceiver) -> None:
        self._receiver = receiver

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._receiver.serve_asgi(scope, receive, send)
