# SPDX-License-Identifier: BUSL-1.1
"""Postmark bounce and spam-complaint webhooks. Postmark signs nothing: the webhook URL is
protected with HTTP basic auth (credentials in the URL Postmark calls) or a custom header,
`X-Webhook-Token`, both set when the webhook is configured in Postmark.

`RecordType` `Bounce` (`Type` HardBounce, BadEmailAddress, ManuallyDeactivated or `Inactive`:
hard; SoftBounce, Transient, DnsError...: soft; informational types are ignored) and
`SpamComplaint`. `MessageID` is Postmark's id (or ours with `X-PM-KeepID`), `Metadata` the
X-PM-Metadata-* headers sent.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from typing import Any

from mail_proxy.feedback.events import (
    FeedbackEvent,
    PayloadInvalid,
    SignatureInvalid,
    bare_message_id,
    code_from,
    iso_epoch,
    obj,
    text,
    valid_recipient,
)

TOKEN_HEADER = "x-webhook-token"
_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "Blocked", "SpamNotification"}
_IGNORED = {
    "Subscribe",
    "Unsubscribe",
    "AutoResponder",
    "AddressChange",
    "OpenRelayTest",
    "ChallengeVerification",
    "Unconfirmed",
    "TemplateRenderingFailed",
}


def _same(given: str | None, expected: object) -> bool:
    if not isinstance(expected, str) or not expected or given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def verify(headers: Mapping[str, str], config: Mapping[str, Any]) -> None:
    """Basic auth (`user`/`password`) or the token header (`token`): what is configured."""
    token = config.get("token")
    if token and _same(headers.get(TOKEN_HEADER), token):
        return
    user, password = config.get("user"), config.get("password")
    auth = headers.get("authorization", "")
    if user and password and auth[:6].lower() == "basic ":
        try:
            pair = base64.b64decode(auth[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            pair = ""
        given_user, _, given_password = pair.partition(":")
        if _same(given_user, user) & _same(given_password, password):
            return
    raise SignatureInvalid("Postmark credentials do not match")


def events(body: bytes, now: int) -> list[FeedbackEvent]:
    try:
        record = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadInvalid("Postmark webhook: body is not JSON") from exc
    if not isinstance(record, dict):
        raise PayloadInvalid("Postmark webhook: body must be a JSON object")
    recipient = valid_recipient(record.get("Email"))
    kind_name = record.get("RecordType")
    if recipient is None or kind_name not in ("Bounce", "SpamComplaint"):
        return []
    metadata = obj(record.get("Metadata"))
    message_id = bare_message_id(record.get("MessageID"))
    references = [v for v in [message_id, text(record.get("Tag"), 998)] if v]
    references += [v[:998] for v in metadata.values() if isinstance(v, str)]
    content = text(record.get("Content"), 100_000)
    if content:
        references.append(content)
    details = text(record.get("Details"))
    if kind_name == "SpamComplaint":
        kind, bounce_type, code = "complaint", "hard", None
        reason: str | None = "complaint: spam report"
    else:
        if record.get("Type") in _IGNORED:
            return []
        kind = "bounce"
        hard = record.get("Type") in _HARD or record.get("Inactive") is True
        bounce_type = "hard" if hard else "soft"
        reason = details or text(record.get("Description"))
        code = code_from(details)
    mail_id = text(metadata.get("genro_mail_id") or metadata.get("genro-mail-id"), 998)
    return [
        FeedbackEvent(
            kind=kind,  # type: ignore[arg-type]
            bounce_type=bounce_type,  # type: ignore[arg-type]
            recipient=recipient,
            code=code,
            reason=reason,
            event_ts=iso_epoch(record.get("BouncedAt"), now),
            provider_event_id=text(record.get("ID")),
            references=references,
            mail_ids=[mail_id] if mail_id else [],
            message_ids=[message_id] if message_id else [],
        )
    ]
