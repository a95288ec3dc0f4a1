# SPDX-License-Identifier: BUSL-1.1
"""Mailgun webhooks ("Securing webhooks"): `signature.signature` is the hex HMAC-SHA256 of
`signature.timestamp` + `signature.token` under the webhook signing key. A signature whose
timestamp is more than `max_age` seconds from now is refused (`check_fresh`: replay protection,
as Mailgun's docs advise).

`event-data.event` `failed` (`severity` permanent: hard, temporary: soft) and `complained`
matter here; `event-data.message.headers.message-id` is the Message-ID sent (without angle
brackets) and `user-variables` the X-Mailgun-Variables given.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from mail_proxy.feedback.events import (
    FeedbackEvent,
    PayloadInvalid,
    SignatureInvalid,
    bare_message_id,
    check_fresh,
    code_from,
    epoch,
    obj,
    text,
    valid_recipient,
)


def parse(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadInvalid("Mailgun webhook: body is not JSON") from exc
    if not isinstance(payload, dict):
        raise PayloadInvalid("Mailgun webhook: body must be a JSON object")
    return payload


def verify(payload: dict[str, Any], signing_key: str, *, now: float, max_age: float) -> None:
    """Raise `SignatureInvalid` unless the HMAC matches and its timestamp is fresh."""
    signature = payload.get("signature")
    if not isinstance(signature, dict):
        raise SignatureInvalid("missing Mailgun signature")
    timestamp, token, given = (
        signature.get("timestamp"),
        signature.get("token"),
        signature.get("signature"),
    )
    if not all(isinstance(v, str | int) for v in (timestamp, token, given)):
        raise SignatureInvalid("incomplete Mailgun signature")
    expected = hmac.new(
        signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, str(given).lower()):
        raise SignatureInvalid("Mailgun signature does not match")
    check_fresh("Mailgun", timestamp, now=now, max_age=max_age)


def replay_key(payload: dict[str, Any]) -> str:
    """What makes a verified signature unique: the signature itself (the HMAC of the exact
    timestamp + token string, however it is split between the two fields). Mailgun's HMAC does
    not cover the event data, so each signature is honoured once (call after `verify`)."""
    return f"signature:{str(payload['signature']['signature']).lower()}"


def events(payload: dict[str, Any], now: int) -> list[FeedbackEvent]:
    data = payload.get("event-data")
    if not isinstance(data, dict):
        raise PayloadInvalid("Mailgun webhook: event-data missing")
    name = data.get("event")
    recipient = valid_recipient(data.get("recipient"))
    if recipient is None or name not in ("failed", "complained"):
        return []
    when = data.get("timestamp")
    ts = epoch(when, now)
    message = obj(data.get("message"))
    headers = obj(message.get("headers"))
    message_id = bare_message_id(headers.get("message-id"))
    variables = data.get("user-variables")
    references = [message_id] if message_id else []
    if isinstance(variables, dict):
        references += [v[:998] for v in variables.values() if isinstance(v, str)]
    status = obj(data.get("delivery-status"))
    if name == "complained":
        kind, bounce_type, code = "complaint", "hard", None
        reason: str | None = "complaint: spam report"
    else:
        kind = "bounce"
        bounce_type = "hard" if data.get("severity") == "permanent" else "soft"
        reason = (
            text(status.get("description"))
            or text(status.get("message"))
            or text(data.get("reason"))
        )
        code = code_from(status.get("enhanced-code"), status.get("message"), status.get("code"))
    mail_ids = []
    if isinstance(variables, dict) and text(variables.get("genro_mail_id"), 998):
        mail_ids = [text(variables.get("genro_mail_id"), 998) or ""]
    return [
        FeedbackEvent(
            kind=kind,  # type: ignore[arg-type]
            bounce_type=bounce_type,  # type: ignore[arg-type]
            recipient=recipient,
            code=code,
            reason=reason,
            event_ts=ts,
            provider_event_id=text(data.get("id")),
            references=references,
            mail_ids=mail_ids,
            message_ids=[message_id] if message_id else [],
        )
    ]
