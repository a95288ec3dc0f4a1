# SPDX-License-Identifier: BUSL-1.1
"""What a provider notification says, once verified: `FeedbackEvent`, and the errors.

FeedbackError (MailProxyError)
├── SignatureInvalid     not from the provider (bad/missing signature, wrong credentials,
│                        topic not allowed, signature too old)      -> HTTP 401
├── PayloadInvalid       signed, or unsignable, but not a shape we read -> HTTP 400
└── VerificationBusy     cannot verify right now (SNS certificate fetch budget spent, or the
                         certificate host is failing): the provider retries -> HTTP 503

Freshness (`check_fresh`): Mailgun and SendGrid sign a timestamp with every delivery; a
signature more than `max_age` seconds away from now (past or future) is refused, so a captured
request cannot be replayed later. Their docs advise checking it; the window is
`GMP_PROVIDER_SIGNATURE_MAX_AGE_SECONDS` (600 s by default, the usual 5-10 minutes).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from mail_proxy.errors import InvalidRequest, MailProxyError

FeedbackKind = Literal["bounce", "complaint"]
BounceType = Literal["hard", "soft"]
PROVIDERS = ("ses", "sendgrid", "mailgun", "postmark")
_ADDRESS = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY = re.compile(r"\b([245]\d\d)\b")


class FeedbackError(MailProxyError):
    """A provider notification that cannot be accepted."""


class SignatureInvalid(FeedbackError):
    """The request is not proven to come from the provider configured for this tenant."""


class PayloadInvalid(FeedbackError, InvalidRequest):
    """The request does not have the provider's documented shape."""


class VerificationBusy(FeedbackError):
    """The signature cannot be checked right now; `retry_after` seconds until it may."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def check_fresh(provider: str, timestamp: object, *, now: float, max_age: float) -> None:
    """Raise `SignatureInvalid` unless `timestamp` (epoch seconds, as signed) is within
    `max_age` seconds of `now`, either way (clocks drift a little both ways)."""
    # Whole epoch seconds, digits only, as both providers send them: "1764476000e0" or " 17…"
    # would verify with another split of the signed timestamp + token string (a replay).
    text = str(timestamp)
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise SignatureInvalid(f"{provider} signature timestamp is not whole epoch seconds")
    signed_at = float(text)
    age = now - signed_at
    if age > max_age:
        raise SignatureInvalid(
            f"{provider} signature is {int(age)} s old; signatures older than {int(max_age)} s"
            " are refused (replay protection; check the server clock if this is unexpected)"
        )
    if -age > max_age:
        raise SignatureInvalid(
            f"{provider} signature timestamp is {int(-age)} s in the future; more than"
            f" {int(max_age)} s is refused (check the server clock)"
        )


@dataclass(frozen=True)
class FeedbackEvent:
    """One recipient's bounce or complaint, with what may identify the original message.

    `references` are texts to search for our correlation token (Message-IDs, header values,
    metadata); `mail_ids` are `X-Genro-Mail-ID` values (the client's id) when the provider
    echoes headers; `message_ids` are Message-ID values as sent.
    """

    kind: FeedbackKind
    bounce_type: BounceType
    recipient: str
    code: str | None
    reason: str | None
    event_ts: int
    provider_event_id: str | None
    references: list[str] = field(default_factory=list)
    mail_ids: list[str] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)


def obj(value: object) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (provider payloads vary)."""
    return value if isinstance(value, dict) else {}


def valid_recipient(value: object) -> str | None:
    """The address when it looks like one (bare addr-spec), else None."""
    if not isinstance(value, str):
        return None
    value = value.strip().strip("<>").strip()
    if len(value) > 320 or not _ADDRESS.match(value):
        return None
    return value


def code_from(*texts: object) -> str | None:
    """The reference's code format (section 10): `5.1.1` -> "511", else a 3-digit reply."""
    for text in texts:
        if isinstance(text, str):
            status = _STATUS.search(text)
            if status:
                return "".join(status.groups())
    for text in texts:
        if isinstance(text, int) and not isinstance(text, bool) and 200 <= text < 600:
            return str(text)
        if isinstance(text, str):
            reply = _REPLY.search(text)
            if reply:
                return reply[1]
    return None


def bare_message_id(value: object) -> str | None:
    """`<abc@host>` or `abc@host` -> `<abc@host>` (how we send them), else None."""
    if not isinstance(value, str) or not value.strip() or len(value) > 998:
        return None
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"


def epoch(value: object, default: int) -> int:
    """Epoch seconds from a provider's number; `default` when absent, not finite or absurd
    (before 1970 or after 5138), so no provider value can overflow a bigint column."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if 0 <= value < 1e11:
            return int(value)
    return default


def iso_epoch(value: object, default: int) -> int:
    """An ISO 8601 timestamp (`Z` allowed, as SES and Postmark send) as epoch seconds;
    `default` when it is missing or not a timestamp."""
    if isinstance(value, str):
        try:
            return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return default
    return default


def text(value: object, limit: int = 500) -> str | None:
    """A short string for reasons and ids; None for anything else."""
    if isinstance(value, str) and value.strip():
        return value.strip()[:limit]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None
