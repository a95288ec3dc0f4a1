# SPDX-License-Identifier: Apache-2.0
"""Building the message that goes on the wire from a stored payload (SPEC section 5).

Promises: `Date` is always set; `Message-ID` is the client's or a generated one that is the same
on every retry of the same stored message; `X-Genro-Mail-ID` always carries the client id; `Bcc`
recipients are in the envelope and never in a header; the envelope sender is `return_path` or
`from`. Plain or HTML body (`content_type: "html"`), attachments as `multipart/mixed`.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email import charset as email_charset
from email import policy
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, getaddresses
from typing import Any

from mail_proxy.addresses import address_of, split_recipients

MAIL_ID_HEADER = "X-Genro-Mail-ID"
# Carries the message's correlation token (mail_proxy.inbound.correlation), for bounces.
TOKEN_HEADER = "X-Genro-Mail-Token"
_MD5_MARKER = re.compile(r"\{MD5:([a-fA-F0-9]+)\}")
_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to", "sender"})
# Bcc never leaves as a header, even when a client sets it as a custom one.
_NEVER_FROM_CUSTOM = frozenset({"bcc"})
# The compat32 API (email.mime) is used on purpose: the modern header registry parses every
# header it is given and costs ~4x more per message on the hot path.
_WIRE_POLICY = policy.compat32.clone(linesep="\r\n")
_UTF8_QP = email_charset.Charset("utf-8")
_UTF8_QP.body_encoding = email_charset.QP


class MessageBuildError(ValueError):
    """The payload cannot become a message (a field is missing or unusable); not retryable."""


@dataclass(frozen=True)
class AttachmentPart:
    """An attachment with its content already fetched."""

    filename: str
    content: bytes
    mime_type: str | None = None


@dataclass(frozen=True)
class WireMessage:
    """What the SMTP client needs: envelope and the serialised message."""

    envelope_from: str
    recipients: list[str]
    data: bytes
    message_id: str


def md5_marker(filename: str) -> str | None:
    """The lowercase hash of an `{MD5:<hex>}` marker in a filename, if any."""
    match = _MD5_MARKER.search(filename)
    return match[1].lower() if match else None


def clean_filename(filename: str) -> str:
    """The filename without its MD5 marker: `report_{MD5:ab}.pdf` -> `report.pdf`."""
    name = _MD5_MARKER.sub("", filename)
    name = re.sub(r"_+", "_", name).strip("_").replace("_.", ".")
    return name or "file.bin"


def stable_message_id(*, tenant_id: str, message_id: str, message_pk: int, sender: str) -> str:
    """A Message-ID derived from the stored message, so a retry carries the same one."""
    digest = hashlib.sha256(f"{tenant_id}\0{message_id}\0{message_pk}".encode()).hexdigest()
    addr = address_of(sender) or ""
    domain = addr.rsplit("@", 1)[-1] if "@" in addr else "mail-proxy.invalid"
    return f"<{digest[:32]}.mp@{domain}>"


def _token_message_id(token: str | None, sender: str) -> str | None:
    if not token:
        return None
    addr = address_of(sender) or ""
    domain = addr.rsplit("@", 1)[-1] if "@" in addr else "mail-proxy.invalid"
    return f"<{token}@{domain}>"


def _required(payload: Mapping[str, Any], field: str) -> Any:
    value = payload.get(field)
    if not value:
        raise MessageBuildError(f"missing '{field}'")
    return value


def _envelope_addresses(values: Sequence[str]) -> list[str]:
    out = []
    for value in values:
        addr = address_of(value)
        if addr is None:
            raise MessageBuildError(f"invalid address: {value!r}")
        out.append(addr)
    return out


def _header_text(value: str) -> str:
    """A header value; non-ASCII text is RFC 2047 encoded."""
    return value if value.isascii() else Header(value, "utf-8").encode()


def _address_header(values: Sequence[str]) -> str:
    """Addresses for a header; non-ASCII display names are RFC 2047 encoded."""
    return ", ".join(formataddr(pair, charset="utf-8") for pair in getaddresses(list(values)))


def _body_part(body: str, subtype: str) -> MIMEText:
    if body.isascii():
        return MIMEText(body, subtype, "us-ascii")
    return MIMEText(body, subtype, _UTF8_QP)  # type: ignore[arg-type]


def _attachment_part(part: AttachmentPart) -> MIMEBase:
    name = clean_filename(part.filename)
    mime = part.mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    maintype, _, subtype = mime.partition("/")
    attachment: MIMEBase
    if maintype == "application":
        attachment = MIMEApplication(part.content, subtype or "octet-stream")
    else:
        attachment = MIMEApplication(part.content)
        attachment.replace_header("Content-Type", f"{maintype}/{subtype or 'octet-stream'}")
    attachment.add_header(
        "Content-Disposition",
        "attachment",
        filename=("utf-8", "", name) if not name.isascii() else name,
    )
    return attachment


def build_message(
    payload: Mapping[str, Any],
    attachments: Sequence[AttachmentPart],
    *,
    tenant_id: str,
    message_pk: int,
    date_ts: float | None = None,
    correlation_token: str | None = None,
    default_return_path: str | None = None,
) -> WireMessage:
    """The wire form of a stored message; raises `MessageBuildError` for unusable payloads.

    `correlation_token` goes in `X-Genro-Mail-Token` and in the generated Message-ID
    (`<token@domain>`); `default_return_path` is the envelope sender of a message that sets
    no `return_path` (the bounce mailbox, so DSNs reach it)."""
    sender = str(_required(payload, "from"))
    to = split_recipients(_required(payload, "to"))
    subject = str(_required(payload, "subject"))
    cc = split_recipients(payload.get("cc"))
    bcc = split_recipients(payload.get("bcc"))
    client_id = str(payload.get("id") or "")

    subtype = "html" if payload.get("content_type") == "html" else "plain"
    body = _body_part(str(payload.get("body") or ""), subtype)
    msg: MIMEBase = body
    if attachments:
        msg = MIMEMultipart("mixed")
        msg.attach(body)
        for part in attachments:
            msg.attach(_attachment_part(part))

    msg["From"] = _address_header([sender])
    msg["To"] = _address_header(to)
    msg["Subject"] = _header_text(subject)
    if cc:
        msg["Cc"] = _address_header(cc)
    if payload.get("reply_to"):
        msg["Reply-To"] = _address_header([str(payload["reply_to"])])
    message_id = str(
        payload.get("message_id")
        or _token_message_id(correlation_token, sender)
        or stable_message_id(
            tenant_id=tenant_id, message_id=client_id, message_pk=message_pk, sender=sender
        )
    )
    msg["Message-ID"] = message_id
    msg["Date"] = formatdate(date_ts, usegmt=True)
    for name, value in (payload.get("headers") or {}).items():
        if value is None or name.lower() in _NEVER_FROM_CUSTOM:
            continue
        del msg[name]
        text = str(value)
        msg[name] = (
            _address_header([text]) if name.lower() in _ADDRESS_HEADERS else _header_text(text)
        )
    if client_id:
        del msg[MAIL_ID_HEADER]
        msg[MAIL_ID_HEADER] = client_id
    if correlation_token:
        del msg[TOKEN_HEADER]
        msg[TOKEN_HEADER] = correlation_token

    envelope_from = address_of(str(payload.get("return_path") or default_return_path or sender))
    if envelope_from is None:
        raise MessageBuildError("invalid address in return_path/from")
    recipients = _envelope_addresses([*to, *cc, *bcc])
    try:
        data = msg.as_bytes(policy=_WIRE_POLICY)
    except (UnicodeError, ValueError) as exc:
        raise MessageBuildError(f"cannot serialise message: {exc}") from exc
    return WireMessage(
        envelope_from=envelope_from,
        recipients=list(dict.fromkeys(recipients)),
        data=data,
        message_id=message_id,
    )
