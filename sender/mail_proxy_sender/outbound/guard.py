# SPDX-License-Identifier: Apache-2.0
"""The SSRF guard inside the HTTP stack: every TCP connection is checked where it is opened.

`GuardedBackend` is an httpcore network backend (httpcore's public plug point for how
connections are made). For each connection it resolves the host name once
(`destinations.vetted_addresses`), keeps only the addresses the `OutboundPolicy` allows, and
connects to one of *those addresses* (TLS still verifies and sends SNI for the host name). So
the address that is checked is the address that is used: a redirect opens a new connection and
is checked again, and a name that resolves to a public address once and a private one later
(DNS rebinding) is judged on the answer actually used.

`GuardedTransport` is an httpx transport built only from public API: it subclasses
`httpx.AsyncBaseTransport` and owns an `httpcore.AsyncConnectionPool` given the backend through
its `network_backend` argument; it converts requests, responses and httpcore errors the way
httpx's own transport does. Nothing private is patched, so an httpx upgrade cannot silently
route around the guard. Environment proxies are never used: a proxy would make the checked
address the proxy's, not the destination's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpcore
import httpx

from mail_proxy.errors import DestinationRefused
from mail_proxy.outbound import OutboundPolicy
from mail_proxy_sender.outbound.destinations import (
    Resolver,
    Unresolvable,
    system_resolver,
    vetted_addresses,
)

__all__ = ["GuardedBackend", "GuardedTransport", "Resolver", "guarded_transport"]

# httpcore error -> the httpx error httpx's own transport raises for it (most specific first).
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, public in _ERRORS:
            if isinstance(exc, core):
                raise public(str(exc)) from exc
        raise


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy allows; see the module doc."""

    def __init__(self, policy: OutboundPolicy, *, resolver: Resolver = system_resolver) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await vetted_addresses(
                self._policy,
                host,
                port,
                resolver=self._resolver,
                timeout_seconds=timeout,
                purpose="http",
            )
        except Unresolvable as exc:
            if isinstance(exc.__cause__, TimeoutError):
                raise httpcore.ConnectTimeout(str(exc)) from exc
            raise httpcore.ConnectError(str(exc)) from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused("Unix sockets are never reached on a tenant's behalf")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            with _httpx_errors():
                await self._stream.aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose every connection goes through `GuardedBackend`."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        resolver: Resolver = system_resolver,
        limits: httpx.Limits | None = None,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self.backend = GuardedBackend(policy, resolver=resolver)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=self.backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("a synchronous request body on an async transport")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def guarded_transport(
    policy: OutboundPolicy,
    *,
    resolver: Resolver = system_resolver,
    limits: httpx.Limits | None = None,
) -> GuardedTransport:
    """An httpx transport whose every connection goes through `GuardedBackend`."""
    return GuardedTransport(policy, resolver=resolver, limits=limits)
