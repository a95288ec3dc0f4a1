# SPDX-License-Identifier: Apache-2.0
"""What one webhook POST carries: the event as JSON and its Standard Webhooks headers.

Body (`Content-Type: application/json`)::

    {"type": "message.<event_type>",          e.g. message.sent, message.bounce,
                                              message.recipient_refused (per recipient)
     "timestamp": "2026-11-29T23:00:00Z",     when the event happened (UTC)
     "data": {"id", "tenant_id", "event_type", "event_ts", "description", "metadata",
              ...the v0.6 delivery-report item's own keys (sent_ts, bounce_type, ...)}}

Headers (Standard Webhooks specification, "Signature scheme"): `webhook-id` (the event's id,
the same on every retry, so receivers can deduplicate), `webhook-timestamp` (epoch seconds of
this attempt), `webhook-signature` (`v1,<base64 HMAC-SHA256>`; during a secret rotation one
signature per live secret, space-separated). Signed with the `standardwebhooks` package, so a
receiver verifies it with the same library (or any implementation of the specification).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook

from mail_proxy.db.reports import PendingEvent
from mail_proxy.db.webhooks import LeasedDelivery
from mail_proxy_sender.reports.items import report_item


def event_message_id(delivery: LeasedDelivery) -> str:
    """The `webhook-id`: the same on every retry of a delivery (Standard Webhooks). A
    per-recipient event has no stored event: its delivery's own id names it."""
    if delivery.event_id is None:
        return f"rcpt_{delivery.id}"
    return f"msg_{delivery.event_id}"


def event_body(delivery: LeasedDelivery) -> dict[str, Any]:
    event = PendingEvent(
        id=delivery.event_id or 0,
        message_id=delivery.message_id,
        event_type=delivery.event_type,
        event_ts=delivery.event_ts,
        description=delivery.description,
        metadata=delivery.metadata,
    )
    data: dict[str, Any] = {
        "id": delivery.message_id,
        "tenant_id": delivery.tenant_id,
        "event_type": delivery.event_type,
        "event_ts": delivery.event_ts,
        "description": delivery.description,
        "metadata": delivery.metadata or {},
    }
    data.update(report_item(event) or {})
    when = dt.datetime.fromtimestamp(delivery.event_ts, tz=dt.UTC)
    return {
        "type": f"message.{delivery.event_type}",
        "timestamp": when.isoformat().replace("+00:00", "Z"),
        "data": data,
    }


def encode_body(body: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:  # an integer beyond 64 bits in free-form metadata
        return json.dumps(body, separators=(",", ":")).encode()


def signed_headers(
    *, secrets: list[str], msg_id: str, body: bytes, now: dt.datetime
) -> dict[str, str]:
    """Standard Webhooks headers for `body`, signed with every secret in `secrets`."""
    text = body.decode()
    signatures = " ".join(Webhook(secret).sign(msg_id, now, text) for secret in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }
