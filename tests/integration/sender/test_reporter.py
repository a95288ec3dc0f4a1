"""The sync protocol against real HTTP receivers, item by item (reference section 5)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import Counter
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.integration.sender.conftest import World, counter, eventually, running_sender
from tests.integration.sender.servers import (
    Handler,
    HttpApp,
    SmtpSink,
    http_server,
    smtp_server,
)

SYNC = "/mail-proxy/sync"


def answering(*answers: dict[str, Any], status: int = 200) -> Handler:
    """A sync handler replying with `answers` in turn (the last one repeats)."""
    replies = list(answers) or [{"ok": True, "queued": 0}]

    async def handler(_: Request) -> Response:
        body = replies.pop(0) if len(replies) > 1 else replies[0]
        return JSONResponse(body, status_code=status)

    return handler


def reports(app: HttpApp, path: str = SYNC) -> list[list[dict[str, Any]]]:
    return [json.loads(r.body)["delivery_report"] for r in app.hits(path)]


def items(app: HttpApp, path: str = SYNC) -> list[dict[str, Any]]:
    return [item for batch in reports(app, path) for item in batch]


async def _insert_event(world: World, message_id: str, kind: str, **fields: Any) -> None:
    await world.execute(
        "INSERT INTO message_events (message_pk, tenant_id, message_id, event_type, event_ts, "
        "description, metadata) SELECT pk, tenant_id, id, $2, $3, $4, $5::text::jsonb "
        "FROM messages WHERE id = $1",
        message_id,
        kind,
        fields.get("ts", 1_700_000_000),
        fields.get("description"),
        json.dumps(fields["metadata"]) if "metadata" in fields else None,
    )


async def test_items_have_the_reference_shapes(world: World) -> None:
    sink = SmtpSink()
    receiver = HttpApp({SYNC: answering()})
    async with smtp_server(sink) as port, http_server(receiver) as app:
        await world.tenant(
            "acme", client_base_url=app.url, client_auth={"method": "bearer", "token": "tok"}
        )
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "ok"}, {"id": "bad"}, {"id": "later"})
        await world.execute(
            "UPDATE messages SET payload = payload || '{\"to\": [\"x@\"]}' WHERE id = 'bad'"
        )
        await _insert_event(
            world,
            "ok",
            "bounce",
            description="550 5.1.1 User unknown",
            metadata={"bounce_type": "hard", "bounce_code": 511},
        )
        await _insert_event(world, "ok", "pec_acceptance", description="PEC accettazione")
        await _insert_event(world, "ok", "pec_delivery")
        async with running_sender(world):
            await eventually(lambda: _reported_all(world))
    got = items(app)
    by_kind = {next(k for k in item if k.endswith(("_ts", "_event"))): item for item in got}
    sent = next(i for i in got if i["id"] == "ok" and "sent_ts" in i)
    assert set(sent) == {"id", "sent_ts"}
    error = next(i for i in got if i["id"] == "bad")
    assert set(error) == {"id", "error_ts", "error"}
    assert error["error"] == "invalid address in to: 'x@'"
    assert by_kind["bounce_ts"] == {
        "id": "ok",
        "bounce_ts": 1_700_000_000,
        "bounce_type": "hard",
        "bounce_code": "511",
        "bounce_reason": "550 5.1.1 User unknown",
    }
    pecs = [i for i in got if "pec_event" in i]
    assert pecs == [
        {
            "id": "ok",
            "pec_event": "pec_acceptance",
            "pec_ts": 1_700_000_000,
            "pec_details": "PEC accettazione",
        },
        {"id": "ok", "pec_event": "pec_delivery", "pec_ts": 1_700_000_000},
    ]
    request = app.hits(SYNC)[0]
    assert request.method == "POST"
    assert request.headers["authorization"] == "Bearer tok"
    assert request.headers["content-type"] == "application/json"
    assert set(json.loads(request.body)) == {"delivery_report"}


async def test_deferred_item_carries_the_retry_time_and_reason(world: World) -> None:
    sink = SmtpSink(reply="450 4.2.0 Mailbox busy")
    receiver = HttpApp({SYNC: answering()})
    async with smtp_server(sink) as port, http_server(receiver) as app:
        await world.tenant("acme", client_base_url=app.url)
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(world):
            await eventually(lambda: _reported_all(world))
    row = await world.message("acme", "m1")
    assert items(app) == [
        {
            "id": "m1",
            "deferred_ts": row["deferred_ts"],
            "deferred_reason": "4.2.0 Mailbox busy (SMTP 450)",
        }
    ]
    assert "authorization" not in app.hits(SYNC)[0].headers


async def test_basic_auth_and_custom_sync_path(world: World) -> None:
    receiver = HttpApp({"/hooks/mail": answering()})
    async with http_server(receiver) as app:
        await world.tenant(
            "acme",
            client_base_url=app.url + "/",
            client_sync_path="/hooks/mail",
            client_auth={"method": "basic", "user": "u", "password": "p"},
        )
        async with running_sender(world):
            await eventually(lambda: _called(app, "/hooks/mail", 1))
    expected = "Basic " + base64.b64encode(b"u:p").decode()
    assert app.hits("/hooks/mail")[0].headers["authorization"] == expected
    assert reports(app, "/hooks/mail")[0] == []  # the idle heartbeat is an empty report


async def test_heartbeat_repeats_and_do_not_disturb_holds_it(world: World) -> None:
    quiet_until = int(time.time()) + 3600
    receiver = HttpApp({SYNC: answering({"ok": True, "next_sync_after": quiet_until})})
    async with http_server(receiver) as app:
        await world.tenant("acme", client_base_url=app.url)
        async with running_sender(world, sync_interval_seconds=1):
            await eventually(lambda: _called(app, SYNC, 1))
            await asyncio.sleep(2.5)  # two heartbeat intervals
            assert len(app.hits(SYNC)) == 1
            assert await world.fetchval("SELECT dnd_until FROM tenants") == quiet_until
            # run-now forgets the DND and wakes the reporter (here as the API does it)
            await world.execute(
                "UPDATE tenants SET last_sync_ts = 0, dnd_until = NULL, sync_retry_at = NULL"
            )
            await world.execute("SELECT pg_notify('mail_proxy_run_now', 'acme')")
            await eventually(lambda: _called(app, SYNC, 2), timeout=5)


async def test_heartbeat_without_dnd_comes_every_interval(world: World) -> None:
    receiver = HttpApp({SYNC: answering()})
    async with http_server(receiver) as app:
        await world.tenant("acme", client_base_url=app.url)
        await world.tenant("sleeping", client_base_url=app.url + "/other", active=False)
        async with running_sender(world, sync_interval_seconds=1):
            await eventually(lambda: _called(app, SYNC, 3), timeout=10)
    assert app.hits("/other/mail-proxy/sync") == []  # inactive tenants get no heartbeat


async def test_queued_answer_calls_again_soon(world: World) -> None:
    receiver = HttpApp({SYNC: answering({"ok": True, "queued": 5}, {"ok": True, "queued": 0})})
    async with http_server(receiver) as app:
        await world.tenant("acme", client_base_url=app.url)
        async with running_sender(world, sync_queued_delay_seconds=0.1):
            await eventually(lambda: _called(app, SYNC, 2), timeout=5)
            await asyncio.sleep(0.5)
    assert len(app.hits(SYNC)) == 2


async def test_queued_without_progress_is_bounded(world: World) -> None:
    receiver = HttpApp({SYNC: answering({"ok": True, "queued": 5})})
    async with http_server(receiver) as app:
        await world.tenant("acme", client_base_url=app.url)
        async with running_sender(world, sync_queued_delay_seconds=0.05, sync_queued_max_rounds=4):
            await eventually(lambda: _called(app, SYNC, 4), timeout=5)
            await asyncio.sleep(1.0)
    assert len(app.hits(SYNC)) == 4


async def test_failing_tenant_backs_off_while_others_keep_receiving(world: World) -> None:
    sink = SmtpSink()
    broken = HttpApp({SYNC: answering(status=500)})
    healthy = HttpApp({SYNC: answering()})
    async with (
        smtp_server(sink) as port,
        http_server(broken) as bad_app,
        http_server(healthy) as good_app,
    ):
        await world.tenant("bad", client_base_url=bad_app.url)
        await world.tenant("good", client_base_url=good_app.url)
        await world.account("bad", "smtp1", port)
        await world.account("good", "smtp1", port)
        await world.enqueue("bad", "smtp1", {"id": "b1"})
        await world.enqueue("good", "smtp1", {"id": "g1"})
        async with running_sender(world, sync_backoff_base_seconds=60) as ctx:
            await eventually(lambda: _reported(world, "good", 1))
            await eventually(lambda: _failures(world, "bad", 1))
            await world.enqueue("good", "smtp1", {"id": "g2"})
            await world.enqueue("bad", "smtp1", {"id": "b2"})
            await eventually(lambda: _reported(world, "good", 2))
            await asyncio.sleep(0.5)
            assert counter(ctx, "gmp_sync_failure_total", tenant_id="bad") == 1
            assert counter(ctx, "gmp_sync_success_total", tenant_id="good") >= 2
    row = await _tenant(world, "bad")
    assert row["sync_failures"] == 1  # backing off: not called again meanwhile
    assert row["last_sync_error"] == "HTTP 500"
    assert time.time() + 40 < row["sync_retry_at"] <= time.time() + 70
    assert len(bad_app.hits(SYNC)) == 1
    assert (
        await world.fetchval(
            "SELECT count(*) FROM message_events WHERE tenant_id = 'bad' AND reported_ts IS NULL"
        )
        == 2
    )


async def test_slow_client_times_out_without_holding_up_others(world: World) -> None:
    async def slow(_: Request) -> Response:
        await asyncio.sleep(5)
        return JSONResponse({"ok": True})

    sink = SmtpSink()
    async with (
        smtp_server(sink) as port,
        http_server(HttpApp({SYNC: slow})) as slow_app,
        http_server(HttpApp({SYNC: answering()})) as fast_app,
    ):
        await world.tenant("slow", client_base_url=slow_app.url)
        await world.tenant("fast", client_base_url=fast_app.url)
        for tenant in ("slow", "fast"):
            await world.account(tenant, "smtp1", port)
            await world.enqueue(tenant, "smtp1", {"id": "m1"})
        async with running_sender(world, sync_timeout_seconds=1.0):
            await eventually(lambda: _reported(world, "fast", 1), timeout=5)
            await eventually(lambda: _failures(world, "slow", 1), timeout=5)
    assert (await _tenant(world, "slow"))["last_sync_error"].endswith(": ReadTimeout")


async def test_global_url_serves_tenants_without_their_own(world: World) -> None:
    sink = SmtpSink()
    receiver = HttpApp({"/global": answering()})
    async with smtp_server(sink) as port, http_server(receiver) as app:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(
            world, client_sync_url=app.url + "/global", client_sync_token="gtok"
        ):
            await eventually(lambda: _reported(world, "acme", 1))
    assert app.hits("/global")[0].headers["authorization"] == "Bearer gtok"
    assert [i["id"] for i in items(app, "/global")] == ["m1"]


async def test_events_with_nowhere_to_go_are_marked_reported(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(world):
            await eventually(lambda: _reported(world, "acme", 1))


async def test_two_reporters_report_each_event_once(world: World) -> None:
    sink = SmtpSink()
    receiver = HttpApp({SYNC: answering()})
    async with smtp_server(sink) as port, http_server(receiver) as app:
        await world.tenant("acme", client_base_url=app.url)
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", *({"id": f"m{i}"} for i in range(300)))
        async with (
            running_sender(world, owner="one", sync_batch_size=20),
            running_sender(world, owner="two", sync_batch_size=20),
        ):
            await eventually(lambda: _reported(world, "acme", 300), timeout=30)
    counts = Counter(item["id"] for item in items(app))
    assert len(counts) == 300
    assert set(counts.values()) == {1}


async def _tenant(world: World, tenant_id: str) -> Any:
    async with world.pool.acquire() as conn:
        return await conn.fetchrow("SELECT * FROM tenants WHERE id = $1", tenant_id)


async def _reported(world: World, tenant_id: str, count: int) -> bool:
    done = await world.fetchval(
        "SELECT count(*) FROM message_events WHERE tenant_id = $1 AND reported_ts IS NOT NULL",
        tenant_id,
    )
    return int(done) >= count


async def _reported_all(world: World) -> bool:
    left = await world.fetchval("SELECT count(*) FROM message_events WHERE reported_ts IS NULL")
    final = await world.fetchval(
        "SELECT count(*) FROM messages WHERE state IN ('sent', 'error', 'deferred')"
    )
    total = await world.fetchval("SELECT count(*) FROM messages")
    return left == 0 and final == total


async def _failures(world: World, tenant_id: str, count: int) -> bool:
    return (await _tenant(world, tenant_id))["sync_failures"] >= count


async def _called(app: HttpApp, path: str, count: int) -> bool:
    return len(app.hits(path)) >= count


async def test_a_refused_sync_url_is_visible_and_names_the_setting(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A newcomer's local app (`client_base_url` on loopback) refused by the outbound policy:
    the tenant's sync status and a WARNING line say so and name GMP_OUTBOUND_ALLOW."""
    caplog.set_level(logging.WARNING)
    sink = SmtpSink()
    app = HttpApp({SYNC: answering()})
    async with smtp_server(sink) as port, http_server(app) as local_app:
        await world.tenant("acme", client_base_url=local_app.url)
        await world.account("acme", "smtp1", port)
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        async with running_sender(world, outbound_allow=(), sync_backoff_base_seconds=60):
            await eventually(lambda: _failures(world, "acme", 1))
    assert app.hits(SYNC) == []
    assert "GMP_OUTBOUND_ALLOW" in (await _tenant(world, "acme"))["last_sync_error"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("GMP_OUTBOUND_ALLOW" in line for line in warnings), warnings
