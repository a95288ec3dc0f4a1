"""Delivery reports reach the app (issue 10 item 6): 307/308 are followed, 301/302/303 are a
failure naming the new location, and a slow tenant never delays another tenant's reports."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.servers import HttpApp, SmtpSink, http_server, smtp_server

SYNC = "/mail-proxy/sync"


def redirect(status: int, location: str) -> Any:
    async def handler(_: Request) -> Response:
        return Response(status_code=status, headers={"Location": location})

    return handler


async def ok(_: Request) -> Response:
    return JSONResponse({"ok": True, "queued": 0})


async def _tenant(world: World, tenant_id: str) -> Any:
    async with world.pool.acquire() as conn:
        return await conn.fetchrow("SELECT * FROM tenants WHERE id = $1", tenant_id)


async def _reported(world: World, tenant_id: str, count: int) -> bool:
    done = await world.fetchval(
        "SELECT count(*) FROM message_events WHERE tenant_id = $1 AND reported_ts IS NOT NULL",
        tenant_id,
    )
    return int(done) >= count


async def _failed(world: World, tenant_id: str) -> bool:
    return (await _tenant(world, tenant_id))["sync_failures"] >= 1


@pytest.mark.parametrize("status", [307, 308])
async def test_307_and_308_are_followed_with_the_same_post(world: World, status: int) -> None:
    sink = SmtpSink()
    receiver = HttpApp({"/old" + SYNC: redirect(status, "/new" + SYNC), "/new" + SYNC: ok})
    async with smtp_server(sink) as port, http_server(receiver) as app:
        await world.tenant(
            "acme",
            client_base_url=app.url + "/old",
            client_auth={"method": "bearer", "token": "tok"},
        )
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(world):
            await eventually(lambda: _reported(world, "acme", 1))
    [first] = [r for r in app.hits("/old" + SYNC) if json.loads(r.body)["delivery_report"]]
    [second] = [r for r in app.hits("/new" + SYNC) if json.loads(r.body)["delivery_report"]]
    assert second.method == "POST"
    assert second.body == first.body
    assert second.headers["authorization"] == "Bearer tok"  # same origin: credentials kept
    assert (await _tenant(world, "acme"))["sync_failures"] == 0


async def test_a_redirect_to_another_origin_drops_the_credentials(world: World) -> None:
    sink = SmtpSink()
    other = HttpApp({SYNC: ok})
    async with smtp_server(sink) as port, http_server(other) as elsewhere:
        first = HttpApp({SYNC: redirect(308, elsewhere.url + SYNC)})
        async with http_server(first) as app:
            await world.tenant(
                "acme", client_base_url=app.url, client_auth={"method": "bearer", "token": "tok"}
            )
            await world.account("acme", "smtp1", port)
            await world.enqueue("acme", "smtp1", {"id": "m1"})
            async with running_sender(world):
                await eventually(lambda: _reported(world, "acme", 1))
    assert app.hits(SYNC)[0].headers["authorization"] == "Bearer tok"
    assert all("authorization" not in r.headers for r in elsewhere.hits(SYNC))


@pytest.mark.parametrize("status", [301, 302, 303])
async def test_301_302_303_fail_naming_the_location(world: World, status: int) -> None:
    sink = SmtpSink()
    receiver = HttpApp({SYNC: redirect(status, "https://www.example.org/mail-proxy/sync?k=v")})
    async with smtp_server(sink) as port, http_server(receiver) as app:
        await world.tenant("acme", client_base_url=app.url)
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(world):
            await eventually(lambda: _failed(world, "acme"))
    error = (await _tenant(world, "acme"))["last_sync_error"]
    assert error.startswith(f"HTTP {status} redirect to https://www.example.org/mail-proxy/sync")
    assert "k=v" not in error  # query values are redacted
    assert not await _reported(world, "acme", 1)


async def test_a_slow_tenant_never_delays_another_tenants_reports(world: World) -> None:
    release = asyncio.Event()

    async def hanging(_: Request) -> Response:
        await release.wait()  # tenant B's endpoint takes as long as the test lasts
        return JSONResponse({"ok": True})

    sink = SmtpSink()
    slow_app = HttpApp({SYNC: hanging})
    fast_app = HttpApp({SYNC: ok})
    async with (
        smtp_server(sink) as port,
        http_server(slow_app) as slow,
        http_server(fast_app) as fast,
    ):
        await world.tenant("slow", client_base_url=slow.url)
        await world.tenant("fast", client_base_url=fast.url)
        await world.account("slow", "smtp1", port)
        await world.account("fast", "smtp1", port)
        async with running_sender(world, sync_timeout_seconds=30.0):
            await world.enqueue("slow", "smtp1", {"id": "s1"})
            await eventually(lambda: _called(slow_app, 1))
            for n in range(3):
                await world.enqueue("fast", "smtp1", {"id": f"f{n}"})
                await eventually(lambda n=n: _reported(world, "fast", n + 1), timeout=10)
            await world.enqueue("slow", "smtp1", {"id": "s2"})
            await world.enqueue("fast", "smtp1", {"id": "f3"})
            await eventually(lambda: _reported(world, "fast", 4), timeout=10)
            release.set()
    accepted = {r.mail_id: r.accepted_at for r in sink.received}
    delays = []
    for request in fast.hits(SYNC):
        for item in json.loads(request.body)["delivery_report"]:
            delays.append(request.at - accepted[item["id"]])
    assert len(delays) == 4
    # Each report left within a second of its message's acceptance, while B hung throughout.
    assert max(delays) < 1.0, delays


async def _called(app: HttpApp, count: int) -> bool:
    return len(app.hits(SYNC)) >= count
