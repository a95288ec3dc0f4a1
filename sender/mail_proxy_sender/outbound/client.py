# SPDX-License-Identifier: Apache-2.0
"""`OutboundClient`: the one way a sender makes HTTP calls on a tenant's behalf.

    async with OutboundClient(settings.outbound_policy, follow_redirects=True) as http:
        response = await http.request("POST", url, json=body, headers=h, timeout_seconds=30)
        async with http.stream("GET", url) as response:
            async for chunk in response.aiter_bytes(): ...

- every connection goes through the SSRF guard (`guard.py`): public addresses only, unless
  allow-listed (`GMP_OUTBOUND_ALLOW`), checked on the resolved address, redirects included;
- every httpx error, raised while sending or while reading a streamed body, is turned once,
  here, into the core tree: `OutboundTemporary` (timeouts, connection and protocol errors) or
  `OutboundPermanent` (unparsable URL, unsupported scheme, too many redirects, a request that
  cannot be encoded), `DestinationRefused` for the guard. Messages name the URL redacted;
- HTTP statuses are not errors: the caller decides what a 4xx or 5xx means for it;
- httpx's own request log lines get their URLs redacted (user info, query values).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from mail_proxy.errors import MailProxyError, OutboundPermanent, OutboundTemporary
from mail_proxy.outbound import OutboundPolicy
from mail_proxy.redact import redact_text, redact_url
from mail_proxy_sender.outbound.destinations import Resolver, system_resolver
from mail_proxy_sender.outbound.guard import guarded_transport

_PERMANENT = (
    httpx.InvalidURL,
    httpx.UnsupportedProtocol,
    httpx.TooManyRedirects,
    httpx.LocalProtocolError,
    httpx.DecodingError,
)
_HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)


class RedactedUrls(logging.Filter):
    """Masks credentials in URLs of httpx's log records ("HTTP Request: GET https://u:p@...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                redact_url(str(arg)) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
            if isinstance(record.msg, str):
                record.msg = redact_text(record.msg)
        elif isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        return True


def redact_httpx_logs() -> None:
    """Install `RedactedUrls` on httpx's logger, once."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, RedactedUrls) for f in logger.filters):
        logger.addFilter(RedactedUrls())


def wrap_error(exc: Exception, method: str, url: object) -> MailProxyError:
    """The core error for an httpx (or request-encoding) error raised calling `url`."""
    where = f"{method} {redact_url(str(url))}"
    name = type(exc).__name__
    if isinstance(exc, (*_PERMANENT, ValueError, TypeError, UnicodeError)):
        return OutboundPermanent(f"{where}: {name}")
    return OutboundTemporary(f"{where}: {name}")


class OutboundClient:
    """Guarded, error-wrapping HTTP client for calls on a tenant's behalf (see module doc)."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        follow_redirects: bool = False,
        max_redirects: int = 5,
        timeout_seconds: float = 30.0,
        resolver: Resolver = system_resolver,
    ) -> None:
        redact_httpx_logs()
        self._http = httpx.AsyncClient(
            transport=guarded_transport(policy, resolver=resolver),
            follow_redirects=follow_redirects,
            max_redirects=max_redirects,
            timeout=timeout_seconds,
            trust_env=False,
        )

    async def __aenter__(self) -> OutboundClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        timeout_seconds: float | None = None,
        max_body_bytes: int = 1024 * 1024,
    ) -> httpx.Response:
        """Send and read the response body, at most `max_body_bytes` of it (a tenant's endpoint
        must not make this process hold what it answers); raises `OutboundError` (never
        httpx's), `OutboundPermanent` for a longer body."""
        async with self.stream(
            method,
            url,
            headers=headers,
            json=json,
            content=content,
            timeout_seconds=timeout_seconds,
        ) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_body_bytes:
                    raise OutboundPermanent(
                        f"{method} {redact_url(str(url))}: the answer is longer than "
                        f"{max_body_bytes} bytes"
                    )
                chunks.append(chunk)
        # The body is decoded already: the new response must not decode it again.
        kept = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            response.status_code,
            headers=kept,
            content=b"".join(chunks),
            request=response.request,
        )

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Send; the body is read inside the block. httpx errors raised inside the block (while
        reading) are wrapped too; the caller's own exceptions pass through unchanged."""
        try:
            request = self._http.build_request(
                method,
                url,
                headers=headers,
                json=json,
                content=content,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout_seconds is None else timeout_seconds,
            )
        except (httpx.InvalidURL, httpx.HTTPError, ValueError, TypeError, UnicodeError) as exc:
            raise wrap_error(exc, method, url) from exc
        try:
            response = await self._http.send(request, stream=True)
        except _HTTPX_ERRORS as exc:
            raise wrap_error(exc, method, url) from exc
        try:
            yield response
        except _HTTPX_ERRORS as exc:
            raise wrap_error(exc, method, url) from exc
        finally:
            await response.aclose()
