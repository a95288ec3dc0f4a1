# SPDX-License-Identifier: BUSL-1.1
"""Amazon SES bounce and complaint notifications, delivered by Amazon SNS.

SNS message signatures ("Verifying the signatures of Amazon SNS messages", SNS developer
guide): the canonical string is `Key\\nValue\\n` for, in this order, `Message`, `MessageId`,
`Subject` (when present), `SubscribeURL` and `Token` (confirmations only), `Timestamp`,
`TopicArn`, `Type`; `Signature` is base64 RSA PKCS#1 v1.5 over it with SHA1
(`SignatureVersion` 1) or SHA256 (2), by the certificate at `SigningCertURL`, which must be
an https URL on an SNS host. The caller checks the URL with `sns_url_allowed`, fetches
it, and hands the PEM to `verify`.

SES notification content ("Amazon SES notification contents"): `notificationType` (or
`eventType` for event publishing) `Bounce` with `bounce.bounceType` Permanent (hard) /
Transient or Undetermined (soft) and `bouncedRecipients[]`, or `Complaint` with
`complainedRecipients[]`; `mail.headers[]`, `mail.commonHeaders.messageId` carry what we sent.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

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

NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_KEYS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")


def parse_envelope(body: bytes) -> dict[str, str]:
    """The SNS message: a JSON object of strings with a known `Type`."""
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadInvalid("not an SNS message: body is not JSON") from exc
    if not isinstance(envelope, dict) or envelope.get("Type") not in TYPES:
        raise PayloadInvalid("not an SNS message: Type must be one of " + ", ".join(TYPES))
    return envelope


def sns_url_allowed(url: object, host_pattern: str, *, certificate: bool = True) -> bool:
    """An https URL whose host fully matches `host_pattern` (and, for a certificate, whose
    path names a .pem): what a SigningCertURL or SubscribeURL may be."""
    if not isinstance(url, str) or len(url) > 2048:
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and not parts.username
        and not parts.password
        and re.fullmatch(host_pattern, host) is not None
        and (parts.path.endswith(".pem") or not certificate)
    )


def canonical_string(envelope: Mapping[str, Any]) -> bytes:
    keys = NOTIFICATION_KEYS if envelope.get("Type") == "Notification" else CONFIRMATION_KEYS
    out = []
    for key in keys:
        value = envelope.get(key)
        if value is None and key == "Subject":
            continue
        if not isinstance(value, str):
            raise SignatureInvalid(f"SNS message lacks {key}")
        out.append(f"{key}\n{value}\n")
    return "".join(out).encode()


def verify(envelope: Mapping[str, Any], certificate_pem: bytes) -> None:
    """Raise `SignatureInvalid` unless the SNS signature matches the certificate's key."""
    version = envelope.get("SignatureVersion")
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        raise SignatureInvalid("unsupported SNS SignatureVersion")
    try:
        signature = base64.b64decode(str(envelope.get("Signature", "")), validate=True)
        key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    except (binascii.Error, ValueError) as exc:
        raise SignatureInvalid("unreadable SNS signature or certificate") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureInvalid("the SNS certificate does not hold an RSA key")
    try:
        key.verify(signature, canonical_string(envelope), padding.PKCS1v15(), algorithm)
    except InvalidSignature as exc:
        raise SignatureInvalid("SNS signature does not match") from exc


def check_topic(envelope: Mapping[str, Any], allowed_topics: list[str]) -> None:
    """Only the tenant's own topics: anyone can sign SNS messages from a topic of theirs."""
    if envelope.get("TopicArn") not in allowed_topics:
        raise SignatureInvalid("SNS topic not allowed for this tenant")


def _headers(mail: Mapping[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for header in mail.get("headers") or ():
        if isinstance(header, dict) and isinstance(header.get("name"), str):
            value = text(header.get("value"), 998)
            if value:
                found.setdefault(header["name"].lower(), []).append(value)
    return found


def notification_events(envelope: Mapping[str, Any], now: int) -> list[FeedbackEvent]:
    """The bounces and complaints in an SNS `Notification` from SES (others: none)."""
    try:
        message = json.loads(str(envelope.get("Message", "")))
    except ValueError as exc:
        raise PayloadInvalid("SES notification: Message is not JSON") from exc
    if not isinstance(message, dict):
        raise PayloadInvalid("SES notification: Message is not an object")
    kind = message.get("notificationType") or message.get("eventType")
    mail = obj(message.get("mail"))
    headers = _headers(mail)
    common = obj(mail.get("commonHeaders"))
    message_ids = [m for m in [bare_message_id(v) for v in headers.get("message-id", [])] if m]
    if not message_ids and bare_message_id(common.get("messageId")):
        message_ids = [bare_message_id(common.get("messageId")) or ""]
    mail_ids = headers.get("x-genro-mail-id", [])
    references = [*message_ids, *headers.get("x-genro-mail-token", [])]
    references += [v for v in [text(mail.get("source"), 998)] if v]  # VERP envelope sender
    events: list[FeedbackEvent] = []
    if kind == "Bounce" and isinstance(message.get("bounce"), dict):
        bounce = message["bounce"]
        hard = bounce.get("bounceType") == "Permanent"
        when = iso_epoch(bounce.get("timestamp"), now)
        for rcpt in bounce.get("bouncedRecipients") or ():
            if not isinstance(rcpt, dict) or not valid_recipient(rcpt.get("emailAddress")):
                continue
            diagnostic = text(rcpt.get("diagnosticCode"))
            events.append(
                FeedbackEvent(
                    kind="bounce",
                    bounce_type="hard" if hard else "soft",
                    recipient=valid_recipient(rcpt["emailAddress"]) or "",
                    code=code_from(rcpt.get("status"), diagnostic),
                    reason=diagnostic or text(bounce.get("bounceSubType")),
                    event_ts=when,
                    provider_event_id=text(bounce.get("feedbackId")),
                    references=references,
                    mail_ids=mail_ids,
                    message_ids=message_ids,
                )
            )
    elif kind == "Complaint" and isinstance(message.get("complaint"), dict):
        complaint = message["complaint"]
        feedback_type = text(complaint.get("complaintFeedbackType")) or "abuse"
        for rcpt in complaint.get("complainedRecipients") or ():
            address = valid_recipient(rcpt.get("emailAddress")) if isinstance(rcpt, dict) else None
            if address:
                events.append(
                    FeedbackEvent(
                        kind="complaint",
                        bounce_type="hard",
                        recipient=address,
                        code=None,
                        reason=f"complaint: {feedback_type}",
                        event_ts=iso_epoch(complaint.get("timestamp"), now),
                        provider_event_id=text(complaint.get("feedbackId")),
                        references=references,
                        mail_ids=mail_ids,
                        message_ids=message_ids,
                    )
                )
    return events
