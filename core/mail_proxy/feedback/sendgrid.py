# SPDX-License-Identifier: BUSL-1.1
"""SendGrid's signed Event Webhook ("Getting started with the Event Webhook Security Features").

Headers `X-Twilio-Email-Event-Webhook-Signature` (base64 DER ECDSA signature) and
`X-Twilio-Email-Event-Webhook-Timestamp`; the signed bytes are timestamp + raw body, SHA-256,
with the P-256 public key SendGrid shows as base64 DER (SubjectPublicKeyInfo). A timestamp
more than `max_age` seconds from now is refused (`check_fresh`: replay protection).

Body: a JSON array of events. `bounce` (type `bounce`: hard, `blocked`: soft), `dropped` (the
address is on SendGrid's own lists: hard) and `spamreport` (complaint) matter here; `smtp-id`
is the Message-ID sent and custom arguments arrive as top-level keys.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mail_proxy.feedback.events import (
    FeedbackEvent,
    PayloadInvalid,
    SignatureInvalid,
    bare_message_id,
    check_fresh,
    code_from,
    epoch,
    text,
    valid_recipient,
)

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER), or a PEM; ValueError if not."""
    try:
        if value.strip().startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(value.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError("not a base64 DER or PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve (ECDSA) public key")
    return key


def verify(
    headers: Mapping[str, str], body: bytes, public_key: str, *, now: float, max_age: float
) -> None:
    """Raise `SignatureInvalid` unless the ECDSA signature over timestamp + body matches and
    the timestamp is fresh."""
    signature = headers.get(SIGNATURE_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise SignatureInvalid("missing SendGrid signature headers")
    try:
        key = load_public_key(public_key)
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature) as exc:
        raise SignatureInvalid("SendGrid signature does not match") from exc
    check_fresh("SendGrid", timestamp, now=now, max_age=max_age)


def _references(event: Mapping[str, Any]) -> list[str]:
    # Custom arguments are top-level keys: every string value may carry our token.
    return [v[:998] for v in event.values() if isinstance(v, str)]


def events(body: bytes, now: int) -> list[FeedbackEvent]:
    try:
        items = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadInvalid("SendGrid events: body is not JSON") from exc
    if not isinstance(items, list):
        raise PayloadInvalid("SendGrid events: body must be a JSON array")
    out: list[FeedbackEvent] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        name = item.get("event")
        recipient = valid_recipient(item.get("email"))
        if recipient is None or name not in ("bounce", "dropped", "spamreport"):
            continue
        when = item.get("timestamp")
        ts = epoch(when, now)
        message_id = bare_message_id(item.get("smtp-id"))
        reason = text(item.get("reason"))
        if name == "spamreport":
            kind, bounce_type, reason = "complaint", "hard", "complaint: spam report"
        elif name == "dropped":
            kind, bounce_type = "bounce", "hard"
            reason = f"dropped by SendGrid: {reason}" if reason else "dropped by SendGrid"
        else:
            kind, bounce_type = "bounce", "soft" if item.get("type") == "blocked" else "hard"
        out.append(
            FeedbackEvent(
                kind=kind,  # type: ignore[arg-type]
                bounce_type=bounce_type,  # type: ignore[arg-type]
                recipient=recipient,
                code=code_from(item.get("status"), reason),
                reason=reason,
                event_ts=ts,
                provider_event_id=text(item.get("sg_event_id")),
                references=_references(item),
                mail_ids=[v for v in [text(item.get("genro_mail_id"), 998)] if v],
                message_ids=[message_id] if message_id else [],
            )
        )
    return out
