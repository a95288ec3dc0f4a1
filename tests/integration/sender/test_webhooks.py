"""Signed per-event webhooks: verified with the `standardwebhooks` library on the receiving side,
retried after 500s and timeouts, given up after the schedule, one delivery per event across two
sender processes, secret rotation with overlap, event-type filters."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mail_proxy.db import webhooks as db_webhooks
from mail_proxy.health import refresh_queue_gauges
from mail_proxy.tokens import new_webhook_secret
from mail_proxy_sender.service import SenderContext
from tests.integration.sender.conftest import World, counter, eventually, running_sender
from tests.integration.sender.processes import sender_processes
from tests.integration.sender.servers import HttpApp, SmtpSink, http_server, smtp_server

FAST_RETRIES = {"webhook_retry_delays_seconds": (0.3, 0.3, 0.3), "webhook_timeout_seconds": 1.0}


async def _webhook(
    world: World, url: str, *, event_types: list[str] | None = None, webhook_id: str = "wh1"
) -> str:
    secret = new_webhook_secret()
    async with world.pool.acquire() as conn:
        await db_webhooks.create_webhook(
            conn,
            tenant_id="acme",
            webhook_id=webhook_id,
            url=url,
            event_types=event_types,
            active=True,
            sealed_secret=world.box.encrypt(secret) or "",
        )
    return secret


class Receiver:
    """A webhook endpoint that verifies every request with the standardwebhooks library."""

    def __init__(self, *secrets: str) -> None:
        self.secrets = list(secrets)
        self.verified: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.refused = 0
        self.answers: list[int | str] = []  # scripted: a status, or "hang"; then 200

    async def __call__(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        for secret in self.secrets:
            try:
                payload = Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            break
        else:
            self.refused += 1
            return Response(status_code=401)
        if self.answers:
            answer = self.answers.pop(0)
            if answer == "hang":
                await asyncio.sleep(3)
                return Response(status_code=200)
            assert isinstance(answer, int)
            return Response(status_code=answer)
        self.verified.append(payload)
        self.ids.append(headers["webhook-id"])
        return Response(status_code=204)


async def _delivery_states(world: World) -> list[str]:
    async with world.pool.acquire() as conn:
        rows = await conn.fetch("SELECT state FROM webhook_deliveries ORDER BY id")
    return [r["state"] for r in rows]


async def test_each_event_is_posted_signed_and_verifiable(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port, http_server(HttpApp()) as app:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        secret = await _webhook(world, app.url + "/hooks")
        receiver = Receiver(secret)
        app.routes["/hooks"] = receiver
        async with running_sender(world) as ctx:
            await world.enqueue("acme", "smtp1", {"id": "m1"}, {"id": "m2"})
            await eventually(lambda: _count(receiver, 2))
            await eventually(lambda: _all_delivered(world))
            await eventually(lambda: _counted(ctx, "delivered", 2))
    assert receiver.refused == 0
    by_id = {p["data"]["id"]: p for p in receiver.verified}
    assert set(by_id) == {"m1", "m2"}
    m1 = by_id["m1"]
    assert m1["type"] == "message.sent"
    assert m1["timestamp"].endswith("Z")
    assert m1["data"]["tenant_id"] == "acme"
    assert m1["data"]["event_type"] == "sent"
    assert abs(m1["data"]["sent_ts"] - time.time()) < 60
    assert len(set(receiver.ids)) == 2
    assert all(i.startswith("msg_") for i in receiver.ids)


async def _counted(ctx: SenderContext, result: str, n: float) -> bool:
    labels = {"tenant_id": "acme", "webhook_id": "wh1", "result": result}
    return counter(ctx, "gmp_webhook_deliveries_total", **labels) == n


async def _count(receiver: Receiver, n: int) -> bool:
    return len(receiver.verified) >= n


async def _all_delivered(world: World) -> bool:
    states = await _delivery_states(world)
    return bool(states) and all(s == "delivered" for s in states)


async def test_500s_and_timeouts_are_retried_then_delivered(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port, http_server(HttpApp()) as app:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        secret = await _webhook(world, app.url + "/hooks")
        receiver = Receiver(secret)
        receiver.answers = [500, "hang", 503]
        app.routes["/hooks"] = receiver
        async with running_sender(world, **FAST_RETRIES) as ctx:
            await world.enqueue("acme", "smtp1", {"id": "m1"})
            await eventually(lambda: _all_delivered(world))
            failed = counter(
                ctx,
                "gmp_webhook_deliveries_total",
                tenant_id="acme",
                webhook_id="wh1",
                result="failed",
            )
    assert failed == 3
    assert len(receiver.verified) == 1
    hits = app.hits("/hooks")
    assert len(hits) == 4
    # The same event id on every attempt, so the receiver can deduplicate.
    assert len({h.headers["webhook-id"] for h in hits}) == 1
    async with world.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT attempts, last_status FROM webhook_deliveries")
        endpoint = await conn.fetchrow("SELECT * FROM webhooks")
    assert row["attempts"] == 4
    assert row["last_status"] == 204
    assert endpoint["consecutive_failures"] == 0
    assert endpoint["last_success_at"] is not None
    assert endpoint["last_error"] == "HTTP 503"


async def test_a_dead_endpoint_is_given_up_after_the_schedule(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port, http_server(HttpApp()) as app:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await _webhook(world, app.url + "/down")  # no route: 404 every time
        async with running_sender(world, **FAST_RETRIES) as ctx:
            await world.enqueue("acme", "smtp1", {"id": "m1"})
            await eventually(lambda: _states_are(world, ["failed"]))
            await eventually(lambda: _counted(ctx, "given_up", 1))
            await refresh_queue_gauges(world.pool, ctx.metrics)
            failing = counter(
                ctx, "gmp_webhook_consecutive_failures", tenant_id="acme", webhook_id="wh1"
            )
    assert failing == 4
    assert len(app.hits("/down")) == 4  # the first attempt and three retries
    async with world.pool.acquire() as conn:
        endpoint = await conn.fetchrow("SELECT * FROM webhooks")
    assert endpoint["consecutive_failures"] == 4
    assert endpoint["last_error"] == "HTTP 404"


async def _states_are(world: World, expected: list[str]) -> bool:
    return await _delivery_states(world) == expected


async def test_rotation_signs_with_both_secrets_during_the_overlap(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port, http_server(HttpApp()) as app:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        old = await _webhook(world, app.url + "/hooks")
        new = new_webhook_secret()
        async with world.pool.acquire() as conn:
            await db_webhooks.rotate_secret(
                conn,
                tenant_id="acme",
                webhook_id="wh1",
                sealed_secret=world.box.encrypt(new) or "",
                overlap_seconds=3600,
            )
        only_old, only_new = Receiver(old), Receiver(new)
        app.routes["/hooks"] = only_old
        async with running_sender(world) as _:
            await world.enqueue("acme", "smtp1", {"id": "m1"})
            await eventually(lambda: _count(only_old, 1))
            app.routes["/hooks"] = only_new
            await world.enqueue("acme", "smtp1", {"id": "m2"})
            await eventually(lambda: _count(only_new, 1))
            # Overlap over: the old secret no longer verifies.
            await world.execute("UPDATE webhooks SET previous_secret_until = now()")
            app.routes["/hooks"] = only_old
            await world.enqueue("acme", "smtp1", {"id": "m3"})
            await eventually(lambda: _refused(only_old))
    signatures = app.hits("/hooks")[0].headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    assert len(app.hits("/hooks")[-1].headers["webhook-signature"].split(" ")) == 1


async def _refused(receiver: Receiver) -> bool:
    return receiver.refused >= 1


async def test_private_addresses_are_refused_unless_allow_listed(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port, http_server(HttpApp()) as app:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port, host="localhost")  # allow-listed by name
        secret = await _webhook(world, app.url + "/hooks")
        await _webhook(world, "http://169.254.169.254/latest/meta-data", webhook_id="meta")
        receiver = Receiver(secret)
        app.routes["/hooks"] = receiver
        async with running_sender(world, outbound_allow=("localhost",), **FAST_RETRIES):
            await world.enqueue("acme", "smtp1", {"id": "m1"})
            await eventually(lambda: _states_are(world, ["failed", "failed"]))
    assert app.requests == []
    async with world.pool.acquire() as conn:
        errors = [r["last_error"] for r in await conn.fetch("SELECT last_error FROM webhooks")]
    assert all((e and "127.0.0.1" not in e) or "refused" in e.lower() for e in errors), errors
    assert all("public" in e or "refused" in e.lower() or "allow" in e.lower() for e in errors)


async def test_an_endless_answer_body_is_never_read(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port, http_server(HttpApp()) as app:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await _webhook(world, app.url + "/firehose")

        async def endless() -> AsyncIterator[bytes]:
            while True:
                yield b"x" * 65536
                await asyncio.sleep(0)

        async def firehose(request: Request) -> Response:
            return StreamingResponse(endless(), status_code=200)

        app.routes["/firehose"] = firehose
        async with running_sender(world):
            await world.enqueue("acme", "smtp1", {"id": "m1"})
            await eventually(lambda: _all_delivered(world), timeout=15)


async def test_event_types_filter_what_an_endpoint_gets(world: World) -> None:
    sink = SmtpSink()
    sink.reply = "550 5.1.1 no such user"
    async with smtp_server(sink) as port, http_server(HttpApp()) as app:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        errors_secret = await _webhook(world, app.url + "/errors", event_types=["error"])
        sent_secret = await _webhook(world, app.url + "/sent", event_types=["sent"], webhook_id="s")
        errors, sent = Receiver(errors_secret), Receiver(sent_secret)
        app.routes["/errors"], app.routes["/sent"] = errors, sent
        async with running_sender(world):
            await world.enqueue("acme", "smtp1", {"id": "m1"})
            await eventually(lambda: _count(errors, 1))
            await asyncio.sleep(0.5)
    assert sent.verified == []
    data = errors.verified[0]["data"]
    assert data["event_type"] == "error"
    assert "550" in data["error"]


async def test_an_inactive_or_deleted_endpoint_gets_nothing(world: World) -> None:
    async with http_server(HttpApp()) as app:
        await world.tenant("acme")
        await _webhook(world, app.url + "/hooks")
        async with world.pool.acquire() as conn:
            await db_webhooks.update_webhook(
                conn,
                tenant_id="acme",
                webhook_id="wh1",
                url=None,
                set_event_types=False,
                event_types=None,
                active=False,
            )
        # A rejected message stores an `error` event at once, without any sender.
        await world.enqueue("acme", "nope", {"id": "m1"})
        assert await _delivery_states(world) == []


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_two_sender_processes_deliver_each_event_once(world: World, tmp_path: Path) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port, http_server(HttpApp()) as app:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        secret = await _webhook(world, app.url + "/hooks")
        receiver = Receiver(secret)

        async def slow(request: Request) -> Response:
            await asyncio.sleep(0.02)  # long enough for both processes to be leasing
            return await receiver(request)

        app.routes["/hooks"] = slow
        async with sender_processes(
            2,
            dsn=world.dsn,
            key=world.key,
            log_dir=tmp_path,
            send_loop_interval_seconds=0.2,
            outcome_flush_seconds=0.05,
            webhook_concurrency=4,
            outbound_allow=("127.0.0.1/32",),
        ) as procs:
            await world.enqueue("acme", "smtp1", *({"id": f"m{i:03d}"} for i in range(200)))
            await eventually(lambda: _count(receiver, 200), timeout=120, every=0.2)
            await asyncio.sleep(1.0)
            for proc in procs:
                assert await proc.stop() == 0
    counts = Counter(receiver.ids)
    assert len(counts) == 200
    assert [i for i, n in counts.items() if n > 1] == []
    assert len(app.hits("/hooks")) == 200
    assert {orjson.loads(h.body)["data"]["id"] for h in app.hits("/hooks")} == {
        f"m{i:03d}" for i in range(200)
    }


async def test_per_recipient_outcomes_are_their_own_events(world: World) -> None:
    """Endpoints that name `recipient_*` types get one signed event per recipient outcome
    change (refused at RCPT, greylisted then accepted); an endpoint for every event does not
    get them; each status is posted once per recipient."""
    sink = SmtpSink(
        rcpt_replies={
            "gone@example.org": "550 5.1.1 User unknown",
            "grey@example.org": "451 4.7.1 Greylisted, try again later",
        }
    )
    async with smtp_server(sink) as port, http_server(HttpApp()) as app:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        per_recipient = Receiver(
            await _webhook(
                world,
                app.url + "/rcpt",
                event_types=["recipient_refused", "recipient_accepted", "recipient_deferred"],
            )
        )
        everything = Receiver(await _webhook(world, app.url + "/all", webhook_id="wh2"))
        app.routes["/rcpt"] = per_recipient
        app.routes["/all"] = everything
        settings = {"retry_delays_seconds": (1,), "retry_jitter_ratio": 0.0}
        async with running_sender(world, **settings):
            await world.enqueue(
                "acme",
                "smtp1",
                {
                    "id": "m1",
                    "to": ["Ok <ok@example.org>", "gone@example.org", "grey@example.org"],
                },
            )
            await eventually(lambda: _count(per_recipient, 3))
            del sink.rcpt_replies["grey@example.org"]
            await eventually(lambda: _count(per_recipient, 4), timeout=30)
            await eventually(lambda: _all_delivered(world))
    got = sorted(
        (p["type"], p["data"]["metadata"]["address"], p["data"]["metadata"]["code"])
        for p in per_recipient.verified
    )
    assert Counter((t, a) for t, a, _ in got) == Counter(
        {
            ("message.recipient_accepted", "Ok <ok@example.org>"): 1,
            ("message.recipient_refused", "gone@example.org"): 1,
            ("message.recipient_deferred", "grey@example.org"): 1,
            ("message.recipient_accepted", "grey@example.org"): 1,
        }
    )
    refused = next(p for p in per_recipient.verified if p["type"] == "message.recipient_refused")
    assert refused["data"]["id"] == "m1"
    assert refused["data"]["metadata"] == {
        "address": "gone@example.org",
        "status": "refused",
        "code": 550,
        "reason": "550 5.1.1 User unknown",
    }
    assert len(set(per_recipient.ids)) == len(per_recipient.ids)
    assert all(not p["type"].startswith("message.recipient_") for p in everything.verified)
    assert {p["type"] for p in everything.verified} >= {"message.deferred", "message.sent"}
