"""`mail_proxy_client` against a real API on a real database, and against a real HTTP server that
answers 429/503 (retries, Retry-After, one Idempotency-Key across them)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mail_proxy_client import (
    AsyncClient,
    AuthenticationError,
    Client,
    MailProxyError,
    Message,
    ServiceUnavailable,
    TransportError,
)
from tests.conftest import free_port, serving
from tests.integration.api.conftest import Api


def _message(msg_id: str, **fields: Any) -> Message:
    return Message(
        id=msg_id,
        account_id="smtp1",
        **{"from": "hello@acme.example"},
        to=["someone@example.org"],
        subject="Welcome",
        **fields,
    )


async def test_sync_client_queues_lists_and_reports_rejections(api: Api) -> None:
    key = await api.new_tenant("acme")
    await api.new_account("acme")
    url = str(api.client.base_url)

    # The sync client in a worker thread: the API runs on this test's event loop.
    def work() -> tuple[Any, list[Any]]:
        with Client(url, api_token=key, tenant_id="acme") as mp:
            result = mp.add_messages(
                [
                    _message("m1", content_type="html", body="<p>Hi</p>", text_body="Hi"),
                    {
                        "id": "m2",
                        "account_id": "smtp1",
                        "from": "a@acme.example",
                        "to": ["x@"],
                        "subject": "bad address",
                    },
                ]
            )
            return result, mp.list_messages()

    result, listed = await asyncio.to_thread(work)
    assert result.queued == 1
    assert [(r.id, r.reason.startswith("invalid address")) for r in result.rejected] == [
        ("m2", True)
    ]
    [stored] = [m for m in listed if m["id"] == "m1"]
    assert stored["message"]["text_body"] == "Hi"
    assert stored["tenant_id"] == "acme"


async def test_async_client_and_its_errors(api: Api) -> None:
    key = await api.new_tenant("acme")
    await api.new_account("acme")
    url = str(api.client.base_url)
    async with AsyncClient(url, api_token=key, tenant_id="acme") as mp:
        assert (await mp.add_messages([_message("a1")])).queued == 1
        assert (await mp.status())["pending_messages"] == 1
    async with AsyncClient(url, api_token="wrong", max_retries=0) as bad:
        with pytest.raises(AuthenticationError) as caught:
            await bad.status()
    assert caught.value.status_code == 401
    async with AsyncClient(
        f"http://127.0.0.1:{free_port()}", max_retries=1, backoff_seconds=0.01
    ) as nowhere:
        with pytest.raises(TransportError):
            await nowhere.status()
    with Client("http://[x", max_retries=0) as broken, pytest.raises(MailProxyError):
        broken.status()


class Busy:
    """ASGI app: answers 503 (or 429) `busy_times`, then 200; records each request's headers."""

    def __init__(self, status: int, busy_times: int, retry_after: str | None) -> None:
        self.status, self.busy_times, self.retry_after = status, busy_times, retry_after
        self.keys: list[str | None] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = dict(scope["headers"])
        self.keys.append(headers.get(b"idempotency-key", b"").decode() or None)
        busy = len(self.keys) <= self.busy_times
        body = b'{"detail": "busy"}' if busy else b'{"ok": true, "queued": 1, "rejected": []}'
        extra = [(b"retry-after", self.retry_after.encode())] if busy and self.retry_after else []
        await send(
            {
                "type": "http.response.start",
                "status": self.status if busy else 200,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize(("status", "retry_after"), [(503, "0"), (429, None)])
async def test_busy_answers_are_retried_with_one_idempotency_key(
    status: int, retry_after: str | None
) -> None:
    app = Busy(status, busy_times=2, retry_after=retry_after)
    async with serving(app) as port:
        async with AsyncClient(
            f"http://127.0.0.1:{port}", api_token="t", backoff_seconds=0.01
        ) as mp:
            result = await mp.add_messages([_message("r1")])
    assert result.queued == 1
    assert len(app.keys) == 3
    assert app.keys[0] is not None
    assert len(set(app.keys)) == 1


async def test_still_busy_after_the_last_retry_raises_with_retry_after() -> None:
    app = Busy(503, busy_times=10, retry_after="0")
    async with serving(app) as port:
        async with AsyncClient(f"http://127.0.0.1:{port}", max_retries=2) as mp:
            with pytest.raises(ServiceUnavailable) as caught:
                await mp.status()
    assert len(app.keys) == 3
    assert caught.value.retry_after_seconds == 0
    assert caught.value.detail == "busy"
