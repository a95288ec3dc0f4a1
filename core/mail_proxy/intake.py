# SPDX-License-Identifier: Apache-2.0
"""Semantic checks on submitted messages, with the reference's exact rejection reasons.

Schema problems (wrong types, unknown attachment keys) are the API's 422; what is checked here
rejects one message and lets the rest of the batch through. A rejected message that has an id
is still stored, as `error`, and reported through the sync protocol like a delivery failure.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from mail_proxy.addresses import address_of, has_crlf, split_recipients, submitted_forms
from mail_proxy.mime import header_problem

# Exact strings of the reference (section 1.4), in the order they are checked.
MISSING_ID = "missing id"
MISSING_TENANT = "missing tenant_id"
MISSING_ACCOUNT = "missing account_id"
MISSING_FROM = "missing from"
MISSING_TO = "missing to"
MISSING_SUBJECT = "missing subject"
ACCOUNT_NOT_FOUND = "account not found for tenant"
ALREADY_SENT = "already sent"
INVALID_PAYLOAD = "invalid payload"
# Ours: checks the reference never made.
NOT_YOUR_TENANT = "Token not authorized for this tenant"
RECIPIENT_SUPPRESSED = "recipient suppressed"  # SPEC section 13
INVALID_ID = "invalid id"  # never stored: it could not be a key, a header or a report item
# More recipients than one message may have (Settings.max_recipients_per_message).
TOO_MANY_RECIPIENTS = "too many recipients"
DEFAULT_MAX_RECIPIENTS = 1000
# Control characters other than HTAB, in any header text (RFC 5322 section 2.2: field bodies
# are printable characters and WSP; RFC 6532 3.2 keeps C1 controls out of UTF-8 headers too),
# and the Unicode line and paragraph separators. CR and LF have their own reason.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
# RFC 5322 section 3.6.8: field-name = 1*ftext, printable US-ASCII except ":".
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]{1,76}")
# Payload key, set by intake, naming the recipients left out because they are suppressed.
SUPPRESSED_KEY = "suppressed_recipients"

_REQUIRED = (
    ("id", MISSING_ID),
    ("tenant_id", MISSING_TENANT),
    ("account_id", MISSING_ACCOUNT),
    ("from", MISSING_FROM),
    ("to", MISSING_TO),
    ("subject", MISSING_SUBJECT),
)
_ADDRESS_FIELDS = ("from", "return_path")
_RECIPIENT_FIELDS = ("to", "cc", "bcc")
_LIST_FIELDS = (*_RECIPIENT_FIELDS, "reply_to")
_HEADER_TEXT_FIELDS = ("subject", "message_id", "batch_code")


def recipient_count(
    to: str | list[str] | None, cc: str | list[str] | None, bcc: str | list[str] | None
) -> int:
    """How many recipients a message names in to + cc + bcc, before any validation."""
    return sum(len(split_recipients(field)) for field in (to, cc, bcc))


def _bad_text(value: str, where: str) -> str | None:
    """A line break or another control character in header text `value`, named."""
    if has_crlf(value):
        return f"line break in {where}"
    if _CONTROL.search(value):
        return f"control character in {where}"
    return None


def rejection_reason(
    message: Mapping[str, Any], *, max_recipients: int = DEFAULT_MAX_RECIPIENTS
) -> str | None:
    """Why this message cannot be queued, or None. Account existence is checked in SQL.

    Runs for every message of every batch: one dict lookup per field, nothing allocated on the
    way to "no reason". The recipient count is checked before any address is validated (each
    validation costs), against `max_recipients`.
    """
    get = message.get
    for field, reason in _REQUIRED:
        # RFC 5322 3.6.3: To may be empty when Cc or Bcc names someone (the message then
        # carries `To: undisclosed-recipients:;`); with no recipient at all, `missing to`.
        if not get(field) and (field != "to" or not (get("cc") or get("bcc"))):
            return reason
    count = recipient_count(get("to"), get("cc"), get("bcc"))
    if count > max_recipients:
        return f"{TOO_MANY_RECIPIENTS}: {count} (at most {max_recipients})"
    for field in _ADDRESS_FIELDS:
        value = get(field)
        if value:
            # Checked before the syntax: the address pattern tolerates surrounding whitespace.
            if bad := _bad_text(value, field):
                return bad
            if address_of(value) is None:
                return f"invalid address in {field}: {value!r}"
    for field in _LIST_FIELDS:
        values = get(field)
        if values:
            if isinstance(values, str):
                # Before splitting, which trims a trailing line break.
                if bad := _bad_text(values, field):
                    return bad
                values = split_recipients(values)
            for value in values:
                if bad := _bad_text(value, field):
                    return bad
                if address_of(value) is None:
                    return f"invalid address in {field}: {value!r}"
    for field in _HEADER_TEXT_FIELDS:
        value = get(field)
        if value and (bad := _bad_text(value, field)):
            return bad
    headers = get("headers")
    if headers:
        for name, value in headers.items():
            if has_crlf(name) or (value is not None and has_crlf(str(value))):
                return f"line break in header {name!r}"
            if _HEADER_NAME.fullmatch(name) is None:
                return f"invalid header name {name[:80]!r}"
            if value is not None and _CONTROL.search(str(value)):
                return f"control character in header {name!r}"
    attachments = get("attachments")
    if attachments:
        for attachment in attachments:
            if bad := _bad_text(attachment.get("filename") or "", "attachment filename"):
                return bad
    if headers or get("message_id"):
        # What the message builder could not make valid is refused now, never at send time.
        return header_problem(message)
    return None


def envelope_addresses(message: Mapping[str, Any]) -> list[str]:
    """The bare, lowercased addresses of every recipient (to, cc, bcc), in order, once each.
    Call after `rejection_reason` found nothing: invalid addresses are skipped here."""
    found: dict[str, None] = {}
    for field in _RECIPIENT_FIELDS:
        for value in message.get(field) or ():
            address = address_of(value)
            if address is not None:
                found[address.lower()] = None
    return list(found)


def suppressed_as_submitted(message: Mapping[str, Any]) -> dict[str, str]:
    """The recipients `suppressed_recipients` left out of `message` (its `SUPPRESSED_KEY`), as
    {normalised address (the sender's key): the recipient as the app wrote it}."""
    hit = {str(a).lower() for a in message.get(SUPPRESSED_KEY) or ()}
    forms = submitted_forms(*(message.get(field) for field in _RECIPIENT_FIELDS))
    return {key: shown for key, shown in forms.items() if key.lower() in hit}


def suppressed_recipients(
    message: Mapping[str, Any], suppressed: Collection[str]
) -> tuple[str | None, list[str]]:
    """Apply a tenant's suppression list to a message: (rejection reason, suppressed addresses).

    Every recipient suppressed: the message is refused with `recipient suppressed`. Some: the
    message goes to the others, and the suppressed ones are reported refused one by one.
    """
    if not suppressed:
        return None, []
    addresses = envelope_addresses(message)
    hit = [address for address in addresses if address in suppressed]
    if hit and len(hit) == len(addresses):
        return RECIPIENT_SUPPRESSED, hit
    return None, hit
