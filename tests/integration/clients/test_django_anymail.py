"""A Django app on mail-proxy through django-anymail, all real: Django's mail API with the
Anymail backend, a running mail-proxy API and sender on the test database, an SMTP server, and
Django serving the tracking webhook over HTTP, receiving mail-proxy's delivery reports as
Anymail `tracking` signals."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF="tests.integration.clients.django_site",
        INSTALLED_APPS=["anymail"],
        USE_TZ=True,
    )
    django.setup()

from anymail.exceptions import AnymailRecipientsRefused
from anymail.signals import AnymailTrackingEvent, tracking
from django.core.mail import EmailMultiAlternatives
from django.core.wsgi import get_wsgi_application
from django.test import override_settings

from mail_proxy.config import Settings
from mail_proxy.encryption import decode_key
from tests.integration.api.conftest import running_api
from tests.integration.sender.conftest import FAST, World, running_sender
from tests.integration.sender.servers import SmtpSink, smtp_server

WEBHOOK_USER, WEBHOOK_PASSWORD = "mp", "a-long-random-password"
BACKEND = "mail_proxy_anymail.backends.mail_proxy.EmailBackend"


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def django_site() -> Iterator[str]:
    """Django's WSGI application on a real HTTP server on 127.0.0.1."""
    server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def tracked() -> Iterator[list[AnymailTrackingEvent]]:
    events: list[AnymailTrackingEvent] = []

    def receive(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> None:
        assert esp_name == "Mail Proxy"
        events.append(event)

    tracking.connect(receive, weak=False)
    try:
        yield events
    finally:
        tracking.disconnect(receive)


def _anymail(api_url: str, api_key: str) -> dict[str, str]:
    """The app's only mail-proxy specific code: its settings."""
    return {
        "MAIL_PROXY_API_URL": api_url,
        "MAIL_PROXY_API_KEY": api_key,
        "MAIL_PROXY_TENANT_ID": "acme",
        "MAIL_PROXY_ACCOUNT_ID": "smtp1",
        "WEBHOOK_SECRET": f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}",
    }


def _send_refused() -> None:
    EmailMultiAlternatives("Hello", "Hi", "billing@acme.example", ["gone@example.org"]).send()


def _send_with_django() -> EmailMultiAlternatives:
    """Plain Django mail code, as an app has it before switching EMAIL_BACKEND."""
    msg = EmailMultiAlternatives(
        subject="Your invoice",
        body="Your invoice is attached.",
        from_email="ACME Billing <billing@acme.example>",
        to=["customer@example.org"],
        cc=["accounts@example.org"],
        bcc=["archive@example.org"],
        reply_to=["help@acme.example"],
        headers={"X-Invoice": "42"},
    )
    msg.attach_alternative("<p>Your <b>invoice</b> is attached.</p>", "text/html")
    msg.attach("invoice.pdf", b"%PDF-1.4 not really", "application/pdf")
    msg.tags = ["invoices-2026-11"]  # type: ignore[attr-defined]
    msg.send()
    return msg


async def _wait(predicate: Any, *, why: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out; seen: {why()}"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(180)
async def test_django_sends_through_anymail_and_receives_tracking_signals(
    world: World, django_site: str, tracked: list[AnymailTrackingEvent]
) -> None:
    sink = SmtpSink()
    settings_ = Settings(**FAST)
    async with (
        smtp_server(sink) as smtp_port,
        running_api(world.dsn, settings=settings_, key=decode_key(world.key)) as api,
    ):
        tenant = {
            "id": "acme",
            "client_base_url": django_site,
            "client_sync_path": "/mail-proxy/sync",
            "client_auth": {"method": "basic", "user": WEBHOOK_USER, "password": WEBHOOK_PASSWORD},
        }
        created = await api.client.post("/tenant", json=tenant, headers=api.admin())
        assert created.status_code == 200, created.text
        await world.account("acme", "smtp1", smtp_port)
        suppressed = {"tenant_id": "acme", "address": "gone@example.org", "reason": "hard bounce"}
        added = await api.client.post("/suppressions", json=suppressed, headers=api.admin())
        assert added.status_code == 200, added.text

        anymail = _anymail(str(api.client.base_url), created.json()["api_key"])
        with override_settings(EMAIL_BACKEND=BACKEND, ANYMAIL=anymail):
            msg = await asyncio.to_thread(_send_with_django)
            status = msg.anymail_status  # type: ignore[attr-defined]
            message_id = status.message_id
            assert status.status == {"queued"}
            stored = await world.message("acme", message_id)
            assert stored["batch_code"] == "invoices-2026-11"
            # A message mail-proxy refuses: Anymail raises, like Django's SMTP backend does.
            with pytest.raises(AnymailRecipientsRefused):
                await asyncio.to_thread(_send_refused)

            async with running_sender(world, **FAST):
                await _wait(lambda: sink.received, why=lambda: sink.attempted)
                await _wait(
                    lambda: {e.event_type for e in tracked} >= {"sent", "rejected"},
                    why=lambda: [(e.event_type, e.recipient, e.esp_event) for e in tracked],
                )

    [mail] = sink.received  # the refused message never reached SMTP
    assert sorted(mail.rcpt_tos) == [
        "accounts@example.org",
        "archive@example.org",
        "customer@example.org",
    ]
    parsed = message_from_bytes(mail.data, policy=policy.default)
    assert parsed["Subject"] == "Your invoice"
    assert parsed["Reply-To"] == "help@acme.example"
    assert parsed["X-Invoice"] == "42"
    assert "archive@example.org" not in str(parsed.get("Cc", ""))
    body = parsed.get_body(preferencelist=("related", "html", "plain"))
    assert body is not None
    alternative = [p for p in parsed.walk() if p.get_content_type() == "multipart/alternative"]
    assert alternative, "text and HTML must travel as multipart/alternative"
    texts = {p.get_content_type(): p.get_content() for p in alternative[0].iter_parts()}
    assert texts["text/plain"].strip() == "Your invoice is attached."
    assert "<b>invoice</b>" in texts["text/html"]
    [attachment] = list(parsed.iter_attachments())
    assert attachment.get_filename() == "invoice.pdf"
    assert attachment.get_content() == b"%PDF-1.4 not really"

    sent = [e for e in tracked if e.event_type == "sent"]
    rejected = [e for e in tracked if e.event_type == "rejected"]
    assert sent[0].message_id == message_id
    assert sent[0].timestamp is not None
    [refusal] = rejected
    assert refusal.message_id.startswith("anymail-")
    assert refusal.message_id != message_id
    assert "suppressed" in (refusal.description or "")


async def test_the_tracking_webhook_refuses_wrong_credentials(django_site: str) -> None:
    import httpx

    with override_settings(ANYMAIL={"WEBHOOK_SECRET": f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}"}):
        async with httpx.AsyncClient(timeout=10) as http:
            url = f"{django_site}/mail-proxy/sync"
            report = {"delivery_report": [{"id": "m1", "sent_ts": 1}]}
            wrong = await http.post(url, json=report, auth=(WEBHOOK_USER, "nope"))
            assert wrong.status_code == 400  # Anymail's answer to a failed validation
            right = await http.post(url, json=report, auth=(WEBHOOK_USER, WEBHOOK_PASSWORD))
            assert right.status_code == 200
            assert right.json() == {"ok": True, "queued": 0}


async def test_each_report_item_becomes_anymail_events(
    django_site: str, tracked: list[AnymailTrackingEvent]
) -> None:
    import httpx

    refused = {"address": "b@example.org", "status": "refused", "code": 550, "reason": "550 no"}
    items = [
        {"id": "m1", "deferred_ts": 10, "deferred_reason": "421 later"},
        {
            "id": "m1",
            "sent_ts": 20,
            "recipients": [{"address": "a@example.org", "status": "accepted"}, refused],
        },
        {"id": "m2", "error_ts": 30, "error": "Max retries (5) exceeded: 451"},
        {
            "id": "m3",
            "bounce_ts": 40,
            "bounce_type": "hard",
            "bounce_code": "511",
            "bounce_reason": "550 5.1.1 User unknown",
        },
        {"id": "m4", "pec_event": "pec_delivery", "pec_ts": 50},
        {"id": "m5", "pec_event": "pec_delivery_warning", "pec_ts": 60},
        {
            "id": "m6",
            "bounce_ts": 70,
            "bounce_type": "hard",
            "bounce_code": "511",
            "bounce_reason": "550 5.1.1 User unknown",
            "recipients": [
                {"address": "a@example.org", "status": "accepted", "code": None, "reason": None},
                refused,  # refused at RCPT earlier: reported then, not again
                {
                    "address": "Gone <gone@example.org>",
                    "status": "refused",
                    "code": 550,
                    "reason": "hard bounce: 550 5.1.1 User unknown",
                },
            ],
        },
    ]
    with override_settings(ANYMAIL={"WEBHOOK_SECRET": f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}"}):
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(
                f"{django_site}/mail-proxy/sync",
                json={"delivery_report": items},
                auth=(WEBHOOK_USER, WEBHOOK_PASSWORD),
            )
    assert answer.status_code == 200
    seen = [(e.message_id, e.event_type, e.recipient) for e in tracked]
    assert seen == [
        ("m1", "deferred", None),
        ("m1", "rejected", "b@example.org"),
        ("m1", "sent", None),
        ("m2", "failed", None),
        ("m3", "bounced", None),
        ("m4", "delivered", None),
        ("m5", "deferred", None),
        ("m6", "bounced", "Gone <gone@example.org>"),
    ]
    assert tracked[4].mta_response == "511 550 5.1.1 User unknown"
    assert len({e.event_id for e in tracked}) == len(tracked)
