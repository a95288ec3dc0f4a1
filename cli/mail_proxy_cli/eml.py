# SPDX-License-Identifier: Apache-2.0
"""An `.eml` file as an add-messages payload (the `send FILE.eml` verb).

From, To, Cc, Bcc, Reply-To, Subject and Message-ID map to their payload fields; the body is the
HTML part when there is one, with the text part as `text_body` (so both go out again as
multipart/alternative), else the text part; every other leaf part with a file name (or an
attachment disposition) becomes a `base64` attachment. The file's other headers (`List-*`,
`In-Reply-To`, `X-*`, ...) go in `headers`, except those that describe its MIME structure or
its past transport (`Content-*`, `Received`, `DKIM-Signature`, `Date`, ...), which the proxy
writes anew. The client id is the Message-ID without its angle brackets, or a generated one when
the file has none.
"""

from __future__ import annotations

import base64
import re
import uuid
from email import policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from typing import Any

# Mapped to payload fields, written by the message builder, or a trace of the file's past trip.
_NOT_CUSTOM = frozenset(
    {
        "from", "to", "cc", "bcc", "reply-to", "subject", "message-id", "date",
        "mime-version", "content-type", "content-transfer-encoding", "content-disposition",
        "content-id", "content-description", "received", "return-path", "delivered-to",
        "dkim-signature", "domainkey-signature", "authentication-results", "arc-seal",
        "arc-message-signature", "arc-authentication-results", "received-spf",
        "x-genro-mail-id", "x-genro-mail-token",
    }
)  # fmt: skip


_FOLD = re.compile(r"\r?\n(?=[ \t])|\r?\n$")


class EmlError(ValueError):
    """The file is not a message we can send (the text says why)."""


def _decoded_headers(msg: MIMEPart) -> list[tuple[str, Any]]:
    """Every header, parsed from its raw bytes: UTF-8 as RFC 6532 allows (the parser's default
    would turn each 8-bit byte into U+FFFD), RFC 2047 words decoded; 8-bit bytes that are not
    UTF-8 are refused, naming the header, rather than sent garbled."""
    out: list[tuple[str, Any]] = []
    for name, raw in msg.raw_items():
        data = str(raw).encode("ascii", "surrogateescape")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise EmlError(
                f"the {name} header has 8-bit bytes that are not UTF-8 (RFC 6532); "
                "encode it as RFC 2047 words or save the file as UTF-8"
            ) from None
        out.append((name, policy.default.header_factory(name, _FOLD.sub("", text))))
    return out


def _text(part: MIMEPart, what: str) -> str:
    """A text part's content, decoded strictly: by its charset, or as UTF-8 when it declares
    none or US-ASCII and carries 8-bit bytes (RFC 6532 practice); what cannot be decoded is
    refused, never turned into U+FFFD."""
    data = part.get_payload(decode=True)
    raw = data if isinstance(data, bytes) else b""
    charset = part.get_content_charset() or "us-ascii"
    if charset in ("us-ascii", "ascii") and not raw.isascii():
        charset = "utf-8"
    try:
        # Lines as the payload's `body` holds them; the message builder writes CRLF on the wire.
        return raw.decode(charset).replace("\r\n", "\n")
    except (LookupError, UnicodeDecodeError):
        raise EmlError(f"the {what} is not valid {charset} text") from None


def _filename(part: MIMEPart) -> str | None:
    """The part's file name from its own headers decoded as `_decoded_headers` does (raw UTF-8
    or RFC 2231/2047), Content-Disposition's `filename` first, then Content-Type's `name`."""
    headers = _decoded_headers(part)
    for header, param in (("Content-Disposition", "filename"), ("Content-Type", "name")):
        for value in _all(headers, header):
            name = getattr(value, "params", {}).get(param)
            if name:
                return str(name)
    return None


def _all(headers: list[tuple[str, Any]], name: str) -> list[Any]:
    return [value for key, value in headers if key.lower() == name.lower()]


def _addresses(headers: list[tuple[str, Any]], name: str) -> list[str]:
    out: list[str] = []
    for header in _all(headers, name):
        addresses = getattr(header, "addresses", None)
        if addresses is None:
            out.append(str(header))
            continue
        out.extend(str(address) for address in addresses)
    return out


def _first(headers: list[tuple[str, Any]], name: str) -> str | None:
    found = _addresses(headers, name)
    return found[0] if found else None


def _attachment(part: EmailMessage, index: int) -> dict[str, Any]:
    content = part.get_payload(decode=True)
    data = content if isinstance(content, bytes) else b""
    return {
        "filename": _filename(part) or f"attachment-{index}.bin",
        "storage_path": base64.b64encode(data).decode("ascii"),
        "fetch_mode": "base64",
        "mime_type": part.get_content_type(),
    }


def message_from_eml(raw: bytes) -> dict[str, Any]:
    """The payload fields of one message (without tenant, account and priority)."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    headers_in = _decoded_headers(msg)
    sender = _first(headers_in, "From")
    if sender is None:
        raise EmlError("no From header")
    # RFC 5322 3.6.3: To is optional; a message for Cc or Bcc recipients only is sent with
    # `To: undisclosed-recipients:;`. At least one recipient somewhere.
    recipients = _addresses(headers_in, "To")
    if not (recipients or _addresses(headers_in, "Cc") or _addresses(headers_in, "Bcc")):
        raise EmlError("no recipient: no address in To, Cc or Bcc")
    subjects = _all(headers_in, "Subject")
    body_part = msg.get_body(preferencelist=("html", "plain"))
    text_part = msg.get_body(preferencelist=("plain",))
    payload: dict[str, Any] = {
        "from": sender,
        "to": recipients,
        "subject": str(subjects[0]) if subjects else "",
        "body": _text(body_part, "message body") if body_part is not None else "",
        "content_type": "html"
        if body_part is not None and body_part.get_content_subtype() == "html"
        else "plain",
    }
    if (
        body_part is not None
        and text_part is not None
        and text_part is not body_part
        and payload["content_type"] == "html"
    ):
        payload["text_body"] = _text(text_part, "text alternative")
    headers = {
        name: str(value)
        for name, value in headers_in
        if name.lower() not in _NOT_CUSTOM and not name.lower().startswith("content-")
    }
    if headers:
        payload["headers"] = headers
    for field, header in (("cc", "Cc"), ("bcc", "Bcc")):
        if found := _addresses(headers_in, header):
            payload[field] = found
    if reply_to := _first(headers_in, "Reply-To"):
        payload["reply_to"] = reply_to
    message_ids = _all(headers_in, "Message-ID")
    message_id = str(message_ids[0]).strip() if message_ids else ""
    if message_id:
        payload["message_id"] = message_id
    payload["id"] = message_id.strip("<>") or f"eml-{uuid.uuid4().hex}"
    attachments = [
        _attachment(part, index)
        for index, part in enumerate(msg.walk(), start=1)
        if not part.is_multipart()
        and part is not body_part
        and part is not text_part
        and (_filename(part) or part.is_attachment())
    ]
    if attachments:
        payload["attachments"] = attachments
    return payload
