"""Provider feedback end to end: a real API, a real HTTPS server standing in for SNS's
certificate host (trustme CA), provider payloads as documented and signed with test keys.
Bounces and complaints reach the message's history, the suppression list and webhooks just as
IMAP bounces do; bad signatures get 401."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mail_proxy.config import Settings
from mail_proxy.encryption import decode_key, generate_key
from mail_proxy.feedback.events import VerificationBusy
from mail_proxy.inbound.correlation import message_token
from mail_proxy_api.sns import SnsCalls
from mail_proxy_cli.services import QuietServer
from tests.integration.api.conftest import Api, running_api
from tests.integration.api.payloads import add_messages, message, tenant_with_account
from tests.provider_samples import (
    TOPIC,
    SendgridSigner,
    SnsSigner,
    basic,
    mailgun_failed,
    postmark_bounce,
    postmark_complaint,
    sendgrid_events,
    ses_bounce,
    ses_complaint,
    sns_confirmation,
    sns_notification,
)


class FakeSnsHost:
    """What the HTTPS server behind SigningCertURL / SubscribeURL saw."""

    def __init__(self, certificate_pem: bytes) -> None:
        self.certificate_pem = certificate_pem
        self.paths: list[str] = []
        self.url = ""

    async def handle(self, request: Request) -> Response:
        self.paths.append(request.url.path)
        if "missing" in request.url.path:
            return Response("no such key", status_code=404)
        if request.url.path.endswith(".pem"):
            return Response(self.certificate_pem, media_type="application/x-pem-file")
        return Response("<ConfirmSubscriptionResponse/>", media_type="text/xml")


@contextlib.asynccontextmanager
async def https_server(app: Any, ca: trustme.CA, tmp: Path) -> AsyncIterator[int]:
    pem = tmp / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        lifespan="off",
        ssl_certfile=str(pem),
        ssl_keyfile=str(pem),
    )
    server = QuietServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def world(dsn: str, tmp_path: Path) -> AsyncIterator[tuple[Api, FakeSnsHost, SnsSigner]]:
    ca = trustme.CA()
    signer = SnsSigner.new()
    host = FakeSnsHost(signer.certificate_pem)
    starlette = Starlette(routes=[Route("/{path:path}", host.handle, methods=["GET"])])
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with (
        https_server(starlette, ca, tmp_path) as port,
        httpx.AsyncClient(verify=context, follow_redirects=False) as http,
    ):
        host.url = f"https://127.0.0.1:{port}"
        settings = Settings(
            sns_certificate_host_pattern=r"127\.0\.0\.1", sns_certificate_fetches_per_minute=5
        )
        async with running_api(
            dsn, settings=settings, key=decode_key(generate_key()), sns=SnsCalls(http)
        ) as api:
            yield api, host, signer


async def _sent(api: Api, msg_id: str, **fields: Any) -> tuple[int, str]:
    """Enqueue a message and mark it sent; returns (pk, our Message-ID for it)."""
    r = await add_messages(api, [message(msg_id, **fields)])
    assert r.status_code == 200, r.text
    async with api.pool.acquire() as conn:
        pk = await conn.fetchval(
            "UPDATE messages SET state = 'sent', smtp_ts = $2 WHERE id = $1 RETURNING pk",
            msg_id,
            int(time.time()),
        )
        secret = await conn.fetchval("SELECT correlation_secret FROM instance")
    return pk, f"<{message_token(secret, pk)}@example.org>"


async def _configure(
    api: Api, provider: str, settings: dict[str, Any], token: str | None = None
) -> None:
    headers = {"X-API-Token": token} if token else api.admin()
    r = await api.client.put(
        f"/providers/{provider}", params={"tenant_id": "acme"}, json=settings, headers=headers
    )
    assert r.status_code == 200, r.text


async def _history(api: Api, msg_id: str) -> list[dict[str, Any]]:
    r = await api.client.get(
        f"/messages/{msg_id}/events", params={"tenant_id": "acme"}, headers=api.admin()
    )
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()["events"]
    return events


async def _suppressed(api: Api) -> dict[str, str]:
    async with api.pool.acquire() as conn:
        rows = await conn.fetch("SELECT address, source FROM suppressions WHERE tenant_id = 'acme'")
    return {r["address"]: r["source"] for r in rows}


async def test_ses_bounces_reach_history_suppressions_and_webhooks(world: Any) -> None:
    api, host, signer = world
    key = await tenant_with_account(api)
    await api.client.post(
        "/webhooks",
        json={"url": "https://hooks.example.org/x", "event_types": ["bounce"]},
        headers={"X-API-Token": key},
    )
    await _configure(api, "ses", {"topic_arns": [TOPIC]})
    _, our_id = await _sent(api, "inv-1", to=["gone@example.net"])
    cert_url = f"{host.url}/SimpleNotificationService-test.pem"
    envelope = signer.sign(
        sns_notification(ses_bounce("Gone@Example.net", message_id=our_id), cert_url)
    )
    r = await api.client.post(
        "/providers/ses/acme",
        content=json.dumps(envelope),
        headers={"Content-Type": "text/plain; charset=UTF-8"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "ok": True,
        "recorded": 1,
        "correlated": 1,
        "duplicates": 0,
        "confirmed": None,
    }
    bounce = (await _history(api, "inv-1"))[-1]
    assert bounce["event_type"] == "bounce"
    assert bounce["metadata"]["bounce_type"] == "hard"
    assert bounce["metadata"]["bounce_code"] == "511"
    assert bounce["metadata"]["source"] == "ses"
    assert await _suppressed(api) == {"gone@example.net": "hard_bounce"}
    # The next message to that address is refused at intake, like after an IMAP bounce.
    r = await add_messages(api, [message("inv-2", to=["gone@example.net"])])
    assert r.json()["detail"]["rejected"][0]["reason"] == "recipient suppressed"
    async with api.pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE event_type = 'bounce'"
            )
            == 1
        )
    # SNS retries: the same notification is applied once.
    r = await api.client.post("/providers/ses/acme", content=json.dumps(envelope))
    assert r.json()["duplicates"] == 1
    assert [e["event_type"] for e in await _history(api, "inv-1")].count("bounce") == 1
    assert host.paths.count("/SimpleNotificationService-test.pem") == 1  # cached


async def test_a_bounce_names_its_recipient_in_messages_and_history(world: Any) -> None:
    """SES bounces one recipient of three: GET /messages and the history show that recipient
    refused (the others accepted), the bounce event carries the list; a complaint about
    another recipient suppresses it but leaves its outcome accepted (it was delivered)."""
    api, host, signer = world
    await tenant_with_account(api)
    await _configure(api, "ses", {"topic_arns": [TOPIC]})
    _, our_id = await _sent(
        api, "inv-m", to=["a@example.net", "gone@example.net"], bcc=["c@example.net"]
    )
    cert_url = f"{host.url}/cert.pem"
    bounce = signer.sign(
        sns_notification(ses_bounce("gone@example.net", message_id=our_id), cert_url)
    )
    r = await api.client.post("/providers/ses/acme", content=json.dumps(bounce))
    assert r.status_code == 200, r.text
    complaint = signer.sign(
        sns_notification(ses_complaint("c@example.net", message_id=our_id), cert_url)
    )
    r = await api.client.post("/providers/ses/acme", content=json.dumps(complaint))
    assert r.json()["correlated"] == 1
    r = await api.client.get("/messages", params={"tenant_id": "acme"}, headers=api.admin())
    [listed] = [m for m in r.json()["messages"] if m["id"] == "inv-m"]
    assert listed["status"] == "sent"
    by_address = {x["address"]: x for x in listed["recipients"]}
    assert {a: x["status"] for a, x in by_address.items()} == {
        "a@example.net": "accepted",
        "gone@example.net": "refused",
        "c@example.net": "accepted",
    }
    assert by_address["gone@example.net"]["code"] == 550
    assert by_address["gone@example.net"]["reason"].startswith("hard bounce: ")
    r = await api.client.get(
        "/messages/inv-m/events", params={"tenant_id": "acme"}, headers=api.admin()
    )
    history = r.json()
    assert {x["address"]: x["status"] for x in history["recipients"]} == {
        a: x["status"] for a, x in by_address.items()
    }
    bounce_event, complaint_event = [e for e in history["events"] if e["event_type"] == "bounce"]
    assert bounce_event["metadata"]["recipient"] == "gone@example.net"
    assert bounce_event["metadata"]["recipients"] == listed["recipients"]
    assert "recipients" not in complaint_event["metadata"]
    assert await _suppressed(api) == {
        "gone@example.net": "hard_bounce",
        "c@example.net": "complaint",
    }


async def test_ses_forgeries_are_refused_with_401(world: Any) -> None:
    api, host, signer = world
    await tenant_with_account(api)
    await _configure(api, "ses", {"topic_arns": [TOPIC]})
    _, our_id = await _sent(api, "inv-1")
    cert_url = f"{host.url}/cert.pem"
    good = signer.sign(
        sns_notification(ses_bounce("gone@example.net", message_id=our_id), cert_url)
    )
    other_key = SnsSigner.new().sign(
        sns_notification(ses_bounce("x@example.net", message_id=our_id), cert_url)
    )
    tampered = {**good, "Message": good["Message"].replace("gone@", "else@")}
    wrong_topic = signer.sign(
        sns_notification(
            ses_bounce("gone@example.net", message_id=our_id),
            cert_url,
            topic="arn:aws:sns:eu-west-1:999999999999:mine",
        )
    )
    elsewhere = signer.sign(
        sns_notification(
            ses_bounce("gone@example.net", message_id=our_id), "https://attacker.example/cert.pem"
        )
    )
    plain_http = signer.sign(
        sns_notification(
            ses_bounce("gone@example.net", message_id=our_id), cert_url.replace("https", "http")
        )
    )
    unsigned = {k: v for k, v in good.items() if k != "Signature"}
    for forged in (other_key, tampered, wrong_topic, elsewhere, plain_http, unsigned):
        r = await api.client.post("/providers/ses/acme", content=json.dumps(forged))
        assert r.status_code == 401, r.text
        assert r.json()["detail"]
    assert host.paths == ["/cert.pem"]  # nothing fetched from the URLs outside the pattern
    for junk in (b"not json", b"[]", b'{"Type": "Nope"}', b"\xff\x00"):
        r = await api.client.post("/providers/ses/acme", content=junk)
        assert r.status_code == 400, r.text
    assert await _suppressed(api) == {}
    assert [e["event_type"] for e in await _history(api, "inv-1")] == ["queued"]


async def test_ses_subscription_is_confirmed_and_complaints_suppress(world: Any) -> None:
    api, host, signer = world
    await tenant_with_account(api)
    await _configure(api, "ses", {"topic_arns": [TOPIC]})
    cert_url = f"{host.url}/cert.pem"
    confirm = signer.sign(
        sns_confirmation(cert_url, f"{host.url}/?Action=ConfirmSubscription&Token=1")
    )
    r = await api.client.post("/providers/ses/acme", content=json.dumps(confirm))
    assert r.status_code == 200, r.text
    assert r.json()["confirmed"] is True
    assert "/" in host.paths
    evil = signer.sign(sns_confirmation(cert_url, "https://attacker.example/?Action=Confirm"))
    assert (
        await api.client.post("/providers/ses/acme", content=json.dumps(evil))
    ).status_code == 401
    _, our_id = await _sent(api, "inv-9", to=["angry@example.net"])
    complaint = signer.sign(
        sns_notification(ses_complaint("angry@example.net", message_id=our_id), cert_url)
    )
    r = await api.client.post("/providers/ses/acme", content=json.dumps(complaint))
    assert r.status_code == 200
    assert r.json()["correlated"] == 1
    assert await _suppressed(api) == {"angry@example.net": "complaint"}
    assert (await _history(api, "inv-9"))[-1]["metadata"]["source"] == "ses_complaint"


async def test_sendgrid_correlates_through_the_clients_message_id(world: Any) -> None:
    api, _, _ = world
    await tenant_with_account(api)
    signer = SendgridSigner.new()
    await _configure(api, "sendgrid", {"public_key": signer.public_key})
    await _sent(api, "inv-1", to=["gone@example.net"], message_id="<client-chosen-1@shop.example>")
    body = json.dumps(
        sendgrid_events("gone@example.net", message_id="<client-chosen-1@shop.example>")
    ).encode()
    r = await api.client.post(
        "/providers/sendgrid/acme", content=body, headers=signer.headers(body)
    )
    assert r.status_code == 200, r.text
    assert r.json()["correlated"] == 1
    assert (await _history(api, "inv-1"))[-1]["metadata"]["source"] == "sendgrid"
    forged = SendgridSigner.new().headers(body)
    assert (
        await api.client.post("/providers/sendgrid/acme", content=body, headers=forged)
    ).status_code == 401
    changed = body.replace(b"gone@", b"else@")
    r = await api.client.post(
        "/providers/sendgrid/acme", content=changed, headers=signer.headers(body)
    )
    assert r.status_code == 401


async def test_sendgrid_and_mailgun_refuse_stale_signatures(world: Any) -> None:
    """A captured notification replayed after the freshness window (600 s by default) is
    refused with 401 and records nothing; a fresh one is taken."""
    api, _, _ = world
    key = await tenant_with_account(api)
    signer = SendgridSigner.new()
    await _configure(api, "sendgrid", {"public_key": signer.public_key})
    await _configure(api, "mailgun", {"signing_key": "key-mailgun-test"}, token=key)
    await _sent(api, "inv-1", to=["gone@example.net"], message_id="<c-1@shop.example>")
    body = json.dumps(sendgrid_events("gone@example.net", message_id="<c-1@shop.example>"))
    hour_ago = int(time.time()) - 3600
    for signed_at in (hour_ago, int(time.time()) + 3600):
        r = await api.client.post(
            "/providers/sendgrid/acme",
            content=body,
            headers=signer.headers(body.encode(), str(signed_at)),
        )
        assert r.status_code == 401, r.text
        assert "SendGrid signature" in r.json()["detail"]
        stale = mailgun_failed(
            "gone@example.net",
            message_id="<c-1@shop.example>",
            signing_key="key-mailgun-test",
            signed_at=signed_at,
        )
        r = await api.client.post("/providers/mailgun/acme", json=stale)
        assert r.status_code == 401, r.text
        assert "Mailgun signature" in r.json()["detail"]
    assert (
        "old; signatures older than 600 s are refused"
        in (
            await api.client.post(
                "/providers/mailgun/acme",
                json=mailgun_failed(
                    "x@example.net",
                    message_id="<a@b>",
                    signing_key="key-mailgun-test",
                    signed_at=hour_ago,
                ),
            )
        ).json()["detail"]
    )
    assert await _suppressed(api) == {}
    assert [e["event_type"] for e in await _history(api, "inv-1")] == ["queued"]
    fresh = mailgun_failed(
        "gone@example.net", message_id="<c-1@shop.example>", signing_key="key-mailgun-test"
    )
    r = await api.client.post("/providers/mailgun/acme", json=fresh)
    assert r.status_code == 200, r.text
    assert r.json()["correlated"] == 1


async def test_forged_sns_floods_cannot_make_the_api_fetch_repeatedly(world: Any) -> None:
    """Forged notifications naming fresh certificate URLs cost at most the fetch budget (5 a
    minute here) and then get 503 + Retry-After; a known URL is never fetched twice, a failing
    one not again for minutes, a topic the tenant did not configure not at all."""
    api, host, _ = world
    await tenant_with_account(api)
    await _configure(api, "ses", {"topic_arns": [TOPIC]})
    _, our_id = await _sent(api, "inv-1")
    forger = SnsSigner.new()

    def forged(path: str, topic: str = TOPIC) -> str:
        notification = sns_notification(
            ses_bounce("gone@example.net", message_id=our_id), f"{host.url}{path}", topic=topic
        )
        return json.dumps(forger.sign(notification))

    for i in range(20):  # a topic that is not the tenant's: refused before any fetch
        r = await api.client.post(
            "/providers/ses/acme", content=forged(f"/c{i}.pem", topic="arn:aws:sns:x:1:other")
        )
        assert r.status_code == 401
    assert host.paths == []
    statuses = []
    for i in range(20):
        r = await api.client.post("/providers/ses/acme", content=forged(f"/flood-{i}.pem"))
        statuses.append(r.status_code)
        if r.status_code == 503:
            assert 1 <= int(r.headers["Retry-After"]) <= 60
            assert "too many SNS signing-certificate fetches" in r.json()["detail"]
    assert statuses == [401] * 5 + [503] * 15
    assert len(host.paths) == 5
    for _ in range(10):  # already fetched: verified against the cached PEM, refused, no fetch
        r = await api.client.post("/providers/ses/acme", content=forged("/flood-0.pem"))
        assert r.status_code == 401
    assert len(host.paths) == 5
    assert await _suppressed(api) == {}


async def test_sns_certificates_are_fetched_once_per_url(tmp_path: Path) -> None:
    """Directly against a real HTTPS host: concurrent requests share one fetch, a failed URL
    is paused, and the per-minute budget refills (clock is ours to move)."""
    ca = trustme.CA()
    host = FakeSnsHost(SnsSigner.new().certificate_pem)
    starlette = Starlette(routes=[Route("/{path:path}", host.handle, methods=["GET"])])
    context = ssl.create_default_context()
    ca.configure_trust(context)
    now = [1000.0]
    async with (
        https_server(starlette, ca, tmp_path) as port,
        httpx.AsyncClient(verify=context, follow_redirects=False) as http,
    ):
        sns = SnsCalls(http, max_cached=2, clock=lambda: now[0])
        base = f"https://127.0.0.1:{port}"
        pattern = r"127\.0\.0\.1"
        pems = await asyncio.gather(
            *(sns.certificate(f"{base}/a.pem", pattern, fetches_per_minute=3) for _ in range(10))
        )
        assert set(pems) == {host.certificate_pem}
        assert host.paths == ["/a.pem"]
        for _ in range(3):
            with pytest.raises(VerificationBusy) as busy:
                await sns.certificate(f"{base}/missing.pem", pattern, fetches_per_minute=3)
        assert busy.value.retry_after == 300
        assert host.paths == ["/a.pem", "/missing.pem"]  # paused after the first failure
        await sns.certificate(f"{base}/b.pem", pattern, fetches_per_minute=3)
        with pytest.raises(VerificationBusy, match="too many"):
            await sns.certificate(f"{base}/c.pem", pattern, fetches_per_minute=3)
        now[0] += 61  # the window moved on: one more fetch allowed
        await sns.certificate(f"{base}/c.pem", pattern, fetches_per_minute=3)
        # Bounded: /a.pem (least recently used) was evicted by /b and /c.
        await sns.certificate(f"{base}/a.pem", pattern, fetches_per_minute=3)
        assert host.paths.count("/a.pem") == 2
        now[0] += 86_401  # cached certificates expire after a day
        await sns.certificate(f"{base}/a.pem", pattern, fetches_per_minute=3)
        assert host.paths.count("/a.pem") == 3


async def test_mailgun_and_postmark(world: Any) -> None:
    api, _, _ = world
    key = await tenant_with_account(api)
    await _configure(api, "mailgun", {"signing_key": "key-mailgun-test"}, token=key)
    await _configure(
        api, "postmark", {"user": "pm", "password": "pm-password-1", "token": "pm-token-123"}
    )
    _, our_id = await _sent(api, "inv-1", to=["gone@example.net"])
    payload = mailgun_failed("gone@example.net", message_id=our_id, signing_key="key-mailgun-test")
    r = await api.client.post("/providers/mailgun/acme", json=payload)
    assert r.status_code == 200, r.text
    assert r.json()["correlated"] == 1
    bad = mailgun_failed("gone@example.net", message_id=our_id, signing_key="guessed-key")
    assert (await api.client.post("/providers/mailgun/acme", json=bad)).status_code == 401
    # Mailgun signs timestamp + token only: a captured signature carrying other event data
    # (or a retry of the same notification) is answered 200 and applies nothing.
    forged = payload | {
        "event-data": payload["event-data"] | {"recipient": "ceo@victim.example", "id": "x"}
    }
    r = await api.client.post("/providers/mailgun/acme", json=forged)
    assert r.status_code == 200
    assert r.json()["recorded"] == 0
    assert r.json()["duplicates"] == 1
    # The same signature with the signed string split differently between the two fields.
    signature = payload["signature"]
    resplit = {
        "timestamp": signature["timestamp"] + signature["token"][:2],
        "token": signature["token"][2:],
        "signature": signature["signature"],
    }
    r = await api.client.post("/providers/mailgun/acme", json=forged | {"signature": resplit})
    assert r.status_code == 401
    listed = await api.client.get(
        "/suppressions", params={"tenant_id": "acme"}, headers=api.admin()
    )
    assert "ceo@victim.example" not in listed.text

    await _sent(api, "inv-2", to=["soft@example.net"])
    body = json.dumps(
        postmark_bounce(
            "soft@example.net",
            message_id="<pm-own-id>",
            metadata={"genro_mail_id": "inv-2"},
            type_="SoftBounce",
        )
        | {"Inactive": False}
    )
    r = await api.client.post(
        "/providers/postmark/acme", content=body, headers=basic("pm", "pm-password-1")
    )
    assert r.status_code == 200, r.text
    assert r.json()["correlated"] == 1
    bounce = (await _history(api, "inv-2"))[-1]
    assert bounce["metadata"]["bounce_type"] == "soft"
    spam = json.dumps(postmark_complaint("spam@example.net", message_id="<unknown>"))
    r = await api.client.post(
        "/providers/postmark/acme", content=spam, headers={"X-Webhook-Token": "pm-token-123"}
    )
    assert r.status_code == 200
    assert r.json() == {
        "ok": True,
        "recorded": 1,
        "correlated": 0,
        "duplicates": 0,
        "confirmed": None,
    }
    for headers in (basic("pm", "wrong"), {"X-Webhook-Token": "nope"}, {}):
        assert (
            await api.client.post("/providers/postmark/acme", content=body, headers=headers)
        ).status_code == 401
    suppressed = await _suppressed(api)
    assert suppressed["gone@example.net"] == "hard_bounce"
    assert suppressed["spam@example.net"] == "complaint"
    assert "soft@example.net" not in suppressed  # one soft bounce does not suppress


async def test_settings_are_scoped_masked_and_validated(world: Any) -> None:
    api, _, _ = world
    acme = await tenant_with_account(api, "acme")
    beta = await tenant_with_account(api, "beta")
    await _configure(api, "mailgun", {"signing_key": "key-mailgun-test"}, token=acme)
    r = await api.client.get("/providers", headers={"X-API-Token": acme})
    [info] = r.json()["providers"]
    assert info["notification_path"] == "/providers/mailgun/acme"
    assert "key-mailgun-test" not in r.text
    async with api.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT config FROM provider_feedback")
    assert stored["token"].startswith("ENC:")
    assert (
        await api.client.get("/providers?tenant_id=acme", headers={"X-API-Token": beta})
    ).status_code == 401
    assert (await api.client.get("/providers", headers={"X-API-Token": beta})).json() == {
        "providers": []
    }
    # beta has no mailgun settings: its notification URL answers 404, acme's is unaffected.
    payload = mailgun_failed("x@example.net", message_id="<m@x>", signing_key="key-mailgun-test")
    assert (await api.client.post("/providers/mailgun/beta", json=payload)).status_code == 404
    assert (await api.client.post("/providers/nope/acme", json=payload)).status_code == 404
    bad = [
        ("ses", {"topic_arns": []}),
        ("ses", {"topic_arns": ["not-an-arn"]}),
        ("sendgrid", {"public_key": "bm90IGEga2V5"}),
        ("mailgun", {"signing_key": "short"}),
        ("mailgun", {"signing_key": "long-enough", "extra": 1}),
        ("postmark", {"user": "only-user"}),
        ("postmark", {}),
    ]
    for provider, body in bad:
        r = await api.client.put(f"/providers/{provider}", json=body, headers={"X-API-Token": acme})
        assert r.status_code == 422, (provider, body, r.text)
    r = await api.client.put("/providers/ses", content=b"{not json", headers={"X-API-Token": acme})
    assert r.status_code == 422
    assert (
        await api.client.delete("/providers/mailgun", headers={"X-API-Token": acme})
    ).status_code == 200
    assert (
        await api.client.delete("/providers/mailgun", headers={"X-API-Token": acme})
    ).status_code == 404
