"""`ReportReceiver` serving mail-proxy's sync protocol, as ASGI (FastAPI) and as WSGI, on real
HTTP servers on 127.0.0.1: credentials checked, items dispatched by kind, failures answered so
that mail-proxy sends the report again."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import pytest
from fastapi import FastAPI

from mail_proxy_client import ReportItem, ReportReceiver
from tests.conftest import serving

REPORT = {
    "delivery_report": [
        {"id": "m1", "deferred_ts": 1728458400, "deferred_reason": "421 try later"},
        {"id": "m1", "sent_ts": 1728458460},
        {"id": "m2", "error_ts": 1728458461, "error": "550 no such user"},
        {
            "id": "m3",
            "bounce_ts": 1728462000,
            "bounce_type": "hard",
            "bounce_code": "511",
            "bounce_reason": "550 5.1.1 User unknown",
        },
        {"id": "m4", "pec_event": "pec_acceptance", "pec_ts": 1728458500},
        {
            "id": "m5",
            "sent_ts": 1728458470,
            "recipients": [
                {"address": "a@example.org", "status": "accepted"},
                {"address": "b@example.org", "status": "refused", "code": 550, "reason": "unknown"},
            ],
        },
    ]
}


class Seen:
    def __init__(self) -> None:
        self.items: list[tuple[str, str, str | None]] = []

    def record(self, item: ReportItem) -> None:
        self.items.append((item.kind, item.id, item.reason))


def _receiver(seen: Seen, **extra: Any) -> ReportReceiver:
    return ReportReceiver(
        bearer_token="s3cret",
        on_sent=seen.record,
        on_error=seen.record,
        on_deferred=seen.record,
        on_bounce=seen.record,
        on_pec=seen.record,
        queued=lambda: 7,
        **extra,
    )


EXPECTED = [
    ("deferred", "m1", "421 try later"),
    ("sent", "m1", None),
    ("error", "m2", "550 no such user"),
    ("bounce", "m3", "550 5.1.1 User unknown"),
    ("pec", "m4", None),
    ("sent", "m5", None),
]


async def _exercise(url: str, seen: Seen) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        ok = await http.post(url, json=REPORT, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert ok.json() == {"ok": True, "queued": 7, "error": [], "not_found": []}
        assert seen.items == EXPECTED

        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            refused = await http.post(url, json=REPORT, headers=headers)
            assert refused.status_code == 401
        bad = await http.post(url, content=b"{not json", headers={"Authorization": "Bearer s3cret"})
        assert bad.status_code == 400
        shape = await http.post(
            url, json={"reports": []}, headers={"Authorization": "Bearer s3cret"}
        )
        assert shape.status_code == 400
        assert (await http.get(url)).status_code == 405
        heartbeat = await http.post(
            url, json={"delivery_report": []}, headers={"Authorization": "Bearer s3cret"}
        )
        assert heartbeat.status_code == 200
    assert len(seen.items) == len(EXPECTED)  # nothing dispatched for refused requests


async def test_asgi_receiver_routed_in_fastapi() -> None:
    seen = Seen()
    app = FastAPI()
    app.add_route("/mail-proxy/sync", _receiver(seen).asgi)
    async with serving(app) as port:
        await _exercise(f"http://127.0.0.1:{port}/mail-proxy/sync", seen)


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def wsgi_url() -> Iterator[tuple[str, Seen]]:
    seen = Seen()
    server = make_server("127.0.0.1", 0, _receiver(seen).wsgi, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def test_wsgi_receiver(wsgi_url: tuple[str, Seen]) -> None:
    url, seen = wsgi_url
    await _exercise(url, seen)


async def test_basic_auth_async_callbacks_and_a_failing_callback() -> None:
    calls: list[str] = []

    async def sent(item: ReportItem) -> None:
        await asyncio.sleep(0)
        calls.append(item.id)

    def broken(item: ReportItem) -> None:
        raise RuntimeError("database down")

    receiver = ReportReceiver(basic_auth=("mp", "pw"), on_sent=sent, on_error=broken)
    auth = "Basic " + base64.b64encode(b"mp:pw").decode()
    app = FastAPI()
    app.add_route("/sync", receiver.asgi)
    async with serving(app) as port, httpx.AsyncClient(timeout=10) as http:
        url = f"http://127.0.0.1:{port}/sync"
        ok = await http.post(url, json=REPORT, headers={"Authorization": auth})
        assert ok.status_code == 500  # m2's callback failed: mail-proxy will send it again
        assert calls == ["m1"]  # processing stops at the failure
        only_sent = {"delivery_report": [REPORT["delivery_report"][1]]}
        assert (
            await http.post(url, json=only_sent, headers={"Authorization": auth})
        ).status_code == 200


def test_a_receiver_without_credentials_must_say_so() -> None:
    with pytest.raises(ValueError, match="allow_unauthenticated"):
        ReportReceiver(on_sent=print)
    open_receiver = ReportReceiver(allow_unauthenticated=True)
    assert open_receiver.handle(b'{"delivery_report": []}', None)[0] == 200
