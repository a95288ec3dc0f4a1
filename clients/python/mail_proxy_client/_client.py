# SPDX-License-Identifier: Apache-2.0
"""`Client` and `AsyncClient`: mail-proxy's REST API over httpx, with retries.

A 429 or 503 answer (the service is busy, or its database is briefly away) and a connection
failure are retried up to `max_retries` times, waiting what `Retry-After` asks, else an
exponential back-off (`backoff_seconds` * 2**attempt, ±20 % jitter, capped at
`max_backoff_seconds`). `add_messages` sends an `Idempotency-Key`, the same on every retry, so
a retried request never queues twice. Other error statuses raise at once (see `_exceptions`).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

import httpx

from mail_proxy_client._exceptions import (
    MailProxyError,
    TransportError,
    ValidationError,
    error_for,
)
from mail_proxy_client._models import AddMessagesResult, Message

TOKEN_HEADER = "X-API-Token"
RETRY_STATUSES = frozenset({429, 503})
DEFAULT_TIMEOUT_SECONDS = 30.0


class _Policy:
    """What both clients share: headers, the retry decision and the answer's decoding."""

    def __init__(
        self,
        *,
        max_retries: int,
        backoff_seconds: float,
        max_backoff_seconds: float,
    ) -> None:
        self.max_retries = max(0, max_retries)
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        asked = _retry_after(response) if response is not None else None
        if asked is not None:
            return min(asked, self.max_backoff_seconds)
        base = self.backoff_seconds * 2**attempt
        return float(min(base * random.uniform(0.8, 1.2), self.max_backoff_seconds))

    def should_retry(self, attempt: int, response: httpx.Response | None) -> bool:
        if attempt >= self.max_retries:
            return False
        return response is None or response.status_code in RETRY_STATUSES

    @staticmethod
    def decode(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except (ValueError, AttributeError):
                detail = response.text
            raise error_for(response.status_code, detail, _retry_after(response))
        if not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text


def _retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), None when absent or invalid."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _headers(api_token: str | None, user_agent: str) -> dict[str, str]:
    headers = {"User-Agent": user_agent, "Accept": "application/json"}
    if api_token:
        headers[TOKEN_HEADER] = api_token
    return headers


def _messages_body(
    messages: Iterable[Message | Mapping[str, Any]],
    default_priority: int | str | None,
    tenant_id: str | None,
) -> dict[str, Any]:
    wire = [
        m.to_wire() if isinstance(m, Message) else Message.model_validate(m).to_wire()
        for m in messages
    ]
    for item in wire:
        if tenant_id is not None:
            item.setdefault("tenant_id", tenant_id)
    body: dict[str, Any] = {"messages": wire}
    if default_priority is not None:
        body["default_priority"] = default_priority
    return body


def _all_refused(exc: ValidationError) -> AddMessagesResult:
    """The v0.6 answer when every message was refused: 400 with the rejections in `detail`
    (reference §1.4). That is a result, not an error; anything else is raised again."""
    detail = exc.detail
    if exc.status_code == 400 and isinstance(detail, dict) and "rejected" in detail:
        return AddMessagesResult(ok=False, queued=0, rejected=detail["rejected"])
    raise exc


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


_USER_AGENT = "mail-proxy-client/0.1"


class _Call(NamedTuple):
    """One API call, as both clients send it."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None


class _Calls:
    """What both clients share: settings, and each operation as a `_Call` (the sync and async
    halves only send them)."""

    def __init__(
        self,
        *,
        tenant_id: str | None,
        max_retries: int,
        backoff_seconds: float,
        max_backoff_seconds: float,
    ) -> None:
        self.tenant_id = tenant_id  # the default for messages and tenant-scoped calls
        self._policy = _Policy(
            max_retries=max_retries,
            backoff_seconds=backoff_seconds,
            max_backoff_seconds=max_backoff_seconds,
        )

    def _tenant(self, tenant_id: str | None) -> dict[str, Any]:
        return {"tenant_id": tenant_id or self.tenant_id}

    def _add_messages(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        default_priority: int | str | None,
        idempotency_key: str | None,
    ) -> _Call:
        return _Call(
            "POST",
            "/commands/add-messages",
            json=_messages_body(messages, default_priority, self.tenant_id),
            headers={"Idempotency-Key": idempotency_key or uuid.uuid4().hex},
        )

    def _list_messages(self, tenant_id: str | None, filters: Mapping[str, Any]) -> _Call:
        return _Call("GET", "/messages", params={**self._tenant(tenant_id), **filters})

    def _delete_messages(self, ids: Iterable[str], tenant_id: str | None) -> _Call:
        return _Call(
            "POST",
            "/commands/delete-messages",
            json={"ids": list(ids)},
            params=self._tenant(tenant_id),
        )

    def _run_now(self, tenant_id: str | None) -> _Call:
        return _Call("POST", "/commands/run-now", params=self._tenant(tenant_id))

    def _failed(
        self, call: _Call, attempt: int, exc: httpx.InvalidURL | httpx.TransportError
    ) -> None:
        """A transport failure: raise unless it is worth another attempt."""
        if isinstance(exc, httpx.InvalidURL):
            raise MailProxyError(f"invalid URL for {call.method} {call.path}: {exc}") from exc
        if not self._policy.should_retry(attempt, None):
            raise TransportError(f"{call.method} {call.path}: {exc}") from exc


class Client(_Calls):
    """Synchronous client: `with Client(url, api_token=KEY, tenant_id="acme") as mp: ...`.

    `tenant_id` fills in messages that name none, and is the tenant of the scoped calls.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_token: str | None = None,
        tenant_id: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_retries: int = 3,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            tenant_id=tenant_id,
            max_retries=max_retries,
            backoff_seconds=backoff_seconds,
            max_backoff_seconds=max_backoff_seconds,
        )
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=_headers(api_token, _USER_AGENT),
            timeout=timeout_seconds,
            transport=transport,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One API call with retries; the decoded JSON answer, or an `APIError`."""
        return self._send(_Call(method, path, json, params, headers))

    def _send(self, call: _Call) -> Any:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    json=call.json,
                    params=_clean(call.params or {}),
                    headers=call.headers,
                )
            except (httpx.InvalidURL, httpx.TransportError) as exc:
                self._failed(call, attempt, exc)
            if response is not None and not self._policy.should_retry(attempt, response):
                return self._policy.decode(response)
            time.sleep(self._policy.delay(attempt, response))
            attempt += 1

    def add_messages(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        *,
        default_priority: int | str | None = None,
        idempotency_key: str | None = None,
    ) -> AddMessagesResult:
        """Queue messages (up to 1000); refused ones are listed in `rejected`, never raised."""
        try:
            answer = self._send(self._add_messages(messages, default_priority, idempotency_key))
        except ValidationError as exc:
            return _all_refused(exc)
        return AddMessagesResult.model_validate(answer)

    def list_messages(self, *, tenant_id: str | None = None, **filters: Any) -> list[Any]:
        """`GET /messages` (filters: status, limit, cursor, include_history, active_only)."""
        messages: list[Any] = self._send(self._list_messages(tenant_id, filters))["messages"]
        return messages

    def delete_messages(self, ids: Iterable[str], *, tenant_id: str | None = None) -> Any:
        return self._send(self._delete_messages(ids, tenant_id))

    def run_now(self, *, tenant_id: str | None = None) -> Any:
        return self._send(self._run_now(tenant_id))

    def status(self) -> Any:
        return self._send(_Call("GET", "/status"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Calls):
    """Asynchronous client: `async with AsyncClient(url, api_token=...) as mp: ...`."""

    def __init__(
        self,
        base_url: str,
        *,
        api_token: str | None = None,
        tenant_id: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_retries: int = 3,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            tenant_id=tenant_id,
            max_retries=max_retries,
            backoff_seconds=backoff_seconds,
            max_backoff_seconds=max_backoff_seconds,
        )
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=_headers(api_token, _USER_AGENT),
            timeout=timeout_seconds,
            transport=transport,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One API call with retries; the decoded JSON answer, or an `APIError`."""
        return await self._send(_Call(method, path, json, params, headers))

    async def _send(self, call: _Call) -> Any:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    json=call.json,
                    params=_clean(call.params or {}),
                    headers=call.headers,
                )
            except (httpx.InvalidURL, httpx.TransportError) as exc:
                self._failed(call, attempt, exc)
            if response is not None and not self._policy.should_retry(attempt, response):
                return self._policy.decode(response)
            await asyncio.sleep(self._policy.delay(attempt, response))
            attempt += 1

    async def add_messages(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        *,
        default_priority: int | str | None = None,
        idempotency_key: str | None = None,
    ) -> AddMessagesResult:
        """Queue messages (up to 1000); refused ones are listed in `rejected`, never raised."""
        call = self._add_messages(messages, default_priority, idempotency_key)
        try:
            answer = await self._send(call)
        except ValidationError as exc:
            return _all_refused(exc)
        return AddMessagesResult.model_validate(answer)

    async def list_messages(self, *, tenant_id: str | None = None, **filters: Any) -> list[Any]:
        """`GET /messages` (filters: status, limit, cursor, include_history, active_only)."""
        answer = await self._send(self._list_messages(tenant_id, filters))
        messages: list[Any] = answer["messages"]
        return messages

    async def delete_messages(self, ids: Iterable[str], *, tenant_id: str | None = None) -> Any:
        return await self._send(self._delete_messages(ids, tenant_id))

    async def run_now(self, *, tenant_id: str | None = None) -> Any:
        return await self._send(self._run_now(tenant_id))

    async def status(self) -> Any:
        return await self._send(_Call("GET", "/status"))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
