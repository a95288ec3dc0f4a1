"""Semantic checks on submitted messages, with the reference's exact rejection reasons.

Schema problems (wrong types, unknown attachment keys) are the API's 422; what is checked here
rejects one message and lets the rest of the batch through. A rejected message that has an id
is still stored, as `error`, and reported through the sync protocol like a delivery failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mail_proxy.addresses import address_of, has_crlf

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

_ADDRESS_FIELDS = ("from", "reply_to", "return_path")
_LIST_FIELDS = ("to", "cc", "bcc")
_HEADER_TEXT_FIELDS = ("subject", "message_id", "batch_code")


def rejection_reason(message: Mapping[str, Any]) -> str | None:
    """Why this message cannot be queued, or None. Account existence is checked in SQL."""
    if not message.get("id"):
        return MISSING_ID
    if not message.get("tenant_id"):
        return MISSING_TENANT
    if not message.get("account_id"):
        return MISSING_ACCOUNT
    if not message.get("from"):
        return MISSING_FROM
    if not message.get("to"):
        return MISSING_TO
    if not message.get("subject"):
        return MISSING_SUBJECT
    for field in _ADDRESS_FIELDS:
        value = message.get(field)
        if value and address_of(value) is None:
            return f"invalid address in {field}: {value!r}"
    for field in _LIST_FIELDS:
        for value in message.get(field) or ():
            if address_of(value) is None:
                return f"invalid address in {field}: {value!r}"
    for field in _HEADER_TEXT_FIELDS:
        value = message.get(field)
        if value and has_crlf(value):
            return f"line break in {field}"
    for name, value in (message.get("headers") or {}).items():
        if has_crlf(name) or (value is not None and has_crlf(str(value))):
            return f"line break in header {name!r}"
    for attachment in message.get("attachments") or ():
        if has_crlf(attachment.get("filename") or ""):
            return "line break in attachment filename"
    return None
