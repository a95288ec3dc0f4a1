# SPDX-License-Identifier: Apache-2.0
"""Building the message that goes on the wire from a stored payload (SPEC section 5).

`build_message(payload, attachments, ...)` is a pure function (no I/O): the same stored message
gives the same bytes, so it can be built at enqueue, at the first attempt or at every attempt.

Promises: `Date` is always set; `Message-ID` is the client's or a generated one that is the same
on every retry of the same stored message; `X-Genro-Mail-ID` always carries the client id; `Bcc`
recipients are in the envelope and never in a header; the envelope sender is `return_path` or
`from`; recipients are deduplicated on the normalised address across To, Cc and Bcc.

On the wire (issue 10 item 1), through the standard library's `email.policy` machinery:
- every line is at most 998 octets (RFC 5322 2.1.1) and headers are folded at 78; a token too
  long to fold is split into RFC 2047 encoded-words of at most 75 characters, and only the words
  that need it are encoded (`Subject: Prix =?utf-8?q?sp=C3=A9cial?=`), as the default policy does;
- the transfer encoding follows the content: `7bit` for short ASCII lines, quoted-printable or
  base64 (whichever is shorter) otherwise, so a long minified HTML line is never sent as is;
- IDN domains go as A-labels (`xn--...`) in envelope and headers; a non-ASCII local part makes the
  message SMTPUTF8 (RFC 6531/6532: UTF-8 headers, `WireMessage.smtputf8`);
- `text_body` with an HTML `body` makes `multipart/alternative` (text first, then HTML);
  attachments wrap the body in `multipart/mixed`.
Custom `headers` cannot change the MIME structure (`Content-Type`, `Content-Transfer-Encoding`,
`MIME-Version` are the builder's) nor add `Bcc`. `header_problem(payload)` is the intake check
that refuses, up front, what the builder could not turn into a valid message.
"""

from __future__ import annotations

import hashlib
import math
import mimetypes
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email import charset as email_charset
from email.headerregistry import Address as HeaderAddress
from email.headerregistry import BaseHeader, HeaderRegistry
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP, EmailPolicy, compat32
from email.utils import format_datetime, formataddr, formatdate, parsedate_to_datetime
from functools import lru_cache
from typing import Any

from mail_proxy.addresses import Address, parse_address, split_recipients

MAIL_ID_HEADER = "X-Genro-Mail-ID"
# Carries the message's correlation token (mail_proxy.inbound.correlation), for bounces.
TOKEN_HEADER = "X-Genro-Mail-Token"
MAX_LINE_OCTETS = 998  # RFC 5322 section 2.1.1 / RFC 5321 section 4.5.3.1.6
_MD5_MARKER = re.compile(r"\{MD5:([a-fA-F0-9]+)\}")
# RFC 5322 3.6.2-3.6.3: headers whose value is an address list.
_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to", "sender"})
# Never taken from custom headers: Bcc would leak; the rest are the builder's MIME structure.
_NEVER_FROM_CUSTOM = frozenset({"bcc", "content-type", "content-transfer-encoding", "mime-version"})
# RFC 5322 2.2: printable US-ASCII except colon; short enough to leave room for a value.
_FIELD_NAME = re.compile(r"^[!-9;-~]{1,76}$")
# RFC 5322 section 3.6.4: msg-id = "<" id-left "@" id-right ">" (the brackets are added when
# missing); printable US-ASCII without spaces.
_MESSAGE_ID = re.compile(r"^<?[!-;=?A-~]{1,125}@[!-;=?A-~]{1,125}>?$")
# Headers people read: folded at 78, a long token split into encoded-words.
_HUMAN_HEADERS = frozenset({"subject", "comments", "keywords", *_ADDRESS_HEADERS})


class _WirePolicy(EmailPolicy):
    """The SMTP policy, except that a machine-read ASCII header (`List-Unsubscribe: <https://
    ...>`, tracking ids) whose long token cannot fold at 78 goes unfolded when its line fits in
    998 octets, instead of being turned into encoded-words that its readers would not decode."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        folded = super().fold_binary(name, value)
        text = str(value)
        if (
            name.lower() not in _HUMAN_HEADERS
            and b"=?" in folded
            and "=?" not in text
            and text.isascii()
            and len(name) + 2 + len(text) <= MAX_LINE_OCTETS
        ):
            return f"{name}: {text}{self.linesep}".encode("ascii")
        empty_first = f"{name}:{self.linesep} ".encode("ascii")
        if folded.startswith(empty_first):
            # The standard folder moves a first word that does not fit after the name to the
            # next line, leaving `Subject:` empty (and a leading space in the value). The
            # word goes on the first line instead: a little over 78, far under 998 octets.
            folded = f"{name}: ".encode("ascii") + folded[len(empty_first) :]
        return folded


class _CachedRegistry(HeaderRegistry):
    """The standard registry builds a new header class with `type()` on every header set;
    caching them per name makes building a message several times cheaper."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


# 7bit forces quoted-printable/base64 for 8-bit or long-lined text (server 8BITMIME not needed).
_ASCII_POLICY: EmailPolicy = _WirePolicy(**SMTP.__dict__).clone(
    cte_type="7bit", header_factory=_CachedRegistry()
)
_UTF8_POLICY: EmailPolicy = _ASCII_POLICY.clone(utf8=True)
# Only parses headers when something is not plain: see `_HeaderBlock`.
_FOLDING = _ASCII_POLICY
_FOLD_AT = 78
# The MIME tree (body, alternatives, attachments) is built with the compat32 classes: the
# modern ones parse every header they set and cost several times more per message. Its own
# headers are short ASCII (Content-Type, encodings, RFC 2231 file names).
_MIME_POLICY = compat32.clone(linesep="\r\n", max_line_length=_FOLD_AT)
_UTF8_QP = email_charset.Charset("utf-8")
_UTF8_QP.body_encoding = email_charset.QP
_UTF8_B64 = email_charset.Charset("utf-8")
_UTF8_B64.body_encoding = email_charset.BASE64


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
    """What the SMTP client needs: envelope and the serialised message.

    `recipients` are normalised envelope addresses, each once; `smtputf8` is true when the
    message needs a server offering SMTPUTF8 (a non-ASCII local part in envelope or headers);
    `utf8_recipients` are the recipients that need it themselves.
    """

    envelope_from: str
    recipients: list[str]
    data: bytes
    message_id: str
    smtputf8: bool = False
    utf8_recipients: frozenset[str] = field(default_factory=frozenset)


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
    parsed = parse_address(sender)
    domain = parsed.domain if parsed is not None else "mail-proxy.invalid"
    if domain.startswith("["):  # a domain literal is no id-right (RFC 5322 3.6.4)
        domain = "mail-proxy.invalid"
    return f"<{digest[:32]}.mp@{domain}>"


def _token_message_id(token: str | None, sender: Address) -> str | None:
    if not token:
        return None
    domain = sender.domain if not sender.domain.startswith("[") else "mail-proxy.invalid"
    return f"<{token}@{domain}>"


def normalise_message_id(value: str) -> str:
    """`abc@host` -> `<abc@host>` (v0.6 clients often leave out the angle brackets)."""
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"


def _addresses(values: Sequence[str], field_name: str) -> list[Address]:
    out = []
    for value in values:
        parsed = parse_address(value)
        if parsed is None:
            raise MessageBuildError(f"invalid address in {field_name}: {value!r}")
        out.append(parsed)
    return out


def _required(payload: Mapping[str, Any], name: str) -> Any:
    value = payload.get(name)
    if not value:
        raise MessageBuildError(f"missing '{name}'")
    return value


def header_problem(payload: Mapping[str, Any]) -> str | None:
    """What in the payload's headers cannot become a valid message, or None (intake check).

    Addresses and line breaks are checked by `mail_proxy.intake`; this covers custom header
    names and values, `message_id` and the structured custom headers (`Date`, address headers).
    """
    message_id = payload.get("message_id")
    if message_id and not _MESSAGE_ID.match(str(message_id).strip()):
        return f"invalid message_id: {str(message_id)[:80]!r}"
    headers = payload.get("headers") or {}
    if not isinstance(headers, Mapping):
        return "headers must be an object"
    for name, value in headers.items():
        if not _FIELD_NAME.match(name):
            return f"invalid header name {name[:80]!r}"
        if value is None:
            continue
        lower = name.lower()
        text = str(value)
        if lower in _ADDRESS_HEADERS:
            for item in split_recipients(text):
                if parse_address(item) is None:
                    return f"invalid address in header {name!r}: {item!r}"
        elif lower == "date":
            try:
                parsedate_to_datetime(text)
            except (TypeError, ValueError):
                return f"invalid date in header {name!r}: {text[:80]!r}"
        elif lower == "message-id" and not _MESSAGE_ID.match(text.strip()):
            return f"invalid message id in header {name!r}: {text[:80]!r}"
    return None


def _fits(name: str, value: str) -> bool:
    """A header that goes out as is: short ASCII with nothing a policy would touch."""
    return len(name) + 2 + len(value) <= _FOLD_AT and value.isascii() and "=?" not in value


class _HeaderBlock:
    """The top-level header lines, in order. Short ASCII headers are written directly (most
    headers of most messages); anything longer or non-ASCII is folded by the standard library's
    policy, so the common case costs no parsing."""

    def __init__(self, omit: frozenset[str]) -> None:
        # (lower-case name, the finished line or a header the policy folds at the end)
        self.lines: list[tuple[str, bytes | BaseHeader]] = []
        self.utf8 = False
        self._omit = omit  # address keys left out of headers (refused for want of SMTPUTF8)

    def _set(self, name: str, line: bytes | BaseHeader) -> None:
        lower = name.lower()
        self.lines = [(n, v) for n, v in self.lines if n != lower]
        self.lines.append((lower, line))

    def addresses(self, name: str, values: Sequence[Address]) -> None:
        shown = [a for a in values if a.key not in self._omit]
        if not shown:
            if name.lower() == "to":  # RFC 5322 3.6.3: an empty group keeps the message valid
                self.text(name, "undisclosed-recipients:;")
            else:
                self._set(name, b"")
            return
        if any(a.smtputf8 for a in shown):
            self.utf8 = True
        elif all(a.display_name.isascii() for a in shown):
            plain = ", ".join(formataddr((a.display_name, a.envelope)) for a in shown)
            if _fits(name, plain) and "\\" not in plain:
                self._set(name, f"{name}: {plain}\r\n".encode("ascii"))
                return
        header = _FOLDING.header_factory(
            name,
            [
                HeaderAddress(display_name=a.display_name, username=a.local_part, domain=a.domain)
                for a in shown
            ],
        )
        self._set(name, header)

    def text(self, name: str, value: str) -> None:
        if _fits(name, value):
            self._set(name, f"{name}: {value}\r\n".encode("ascii"))
        else:
            self._set(name, _FOLDING.header_factory(name, value))

    def serialise(self, utf8: bool) -> bytes:
        policy = _UTF8_POLICY if utf8 else _ASCII_POLICY
        out = []
        for _, line in self.lines:
            if isinstance(line, bytes):
                out.append(line)
            else:
                out.append(policy.fold_binary(line.name, line))
        return b"".join(out)


@lru_cache(maxsize=64)
def _date(second: int) -> str:
    """The `Date` value of a second (RFC 5322 3.3, GMT), formatted once per second: messages
    built in the same second share it."""
    return formatdate(second, usegmt=True)


def _text_part(text: str, subtype: str) -> MIMEText:
    """A text part whose transfer encoding follows its content: 7bit for ASCII lines that fit
    (RFC 5322 2.1.1), else quoted-printable, or base64 for mostly non-ASCII text."""
    if _is_7bit(text):
        return MIMEText(text, subtype, "us-ascii")
    non_ascii = sum(1 for c in text if ord(c) > 127)
    charset = _UTF8_B64 if non_ascii * 6 > len(text) else _UTF8_QP
    return MIMEText(text, subtype, charset)  # type: ignore[arg-type]


# The email package's line splitting (`email.generator.NLCRE`): CRLF, CR and LF all end a line.
_LINE_END = re.compile(r"\r\n|\r|\n")
# The bytes the email package writes before a 7bit US-ASCII text part's content, taken from the
# package itself (so the shortcut below cannot drift from it).
_ASCII_TEXT_HEAD = {
    subtype: MIMEText("", subtype, "us-ascii").as_bytes(policy=_MIME_POLICY)
    for subtype in ("plain", "html")
}


def _plain_ascii_body(payload: Mapping[str, Any]) -> bytes | None:
    """The serialised body when it is one text part of short ASCII lines (most messages),
    written directly: the same bytes `_body(payload).as_bytes(...)` gives, at a fraction of
    the cost (no MIME objects, no generator). None for anything else."""
    html = payload.get("content_type") == "html"
    if html and payload.get("text_body"):
        return None  # multipart/alternative
    text = str(payload.get("body") or "")
    if not _is_7bit(text):
        return None
    return _ASCII_TEXT_HEAD["html" if html else "plain"] + "\r\n".join(
        _LINE_END.split(text)
    ).encode("ascii")


def _is_7bit(text: str) -> bool:
    """ASCII whose every line fits in 998 octets with its CRLF (RFC 5322 2.1.1)."""
    return text.isascii() and max(map(len, text.splitlines() or [""])) <= MAX_LINE_OCTETS - 2


def _body(payload: Mapping[str, Any]) -> MIMEBase:
    body = str(payload.get("body") or "")
    if payload.get("content_type") != "html":
        return _text_part(body, "plain")
    text_body = payload.get("text_body")
    if not text_body:
        return _text_part(body, "html")
    alternative = MIMEMultipart("alternative")
    alternative.attach(_text_part(str(text_body), "plain"))  # RFC 2046 5.1.4: simplest first
    alternative.attach(_text_part(body, "html"))
    return alternative


def _attachment_part(part: AttachmentPart) -> MIMEBase:
    name = clean_filename(part.filename)
    mime = part.mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    maintype, _, subtype = mime.partition("/")
    # Every attachment is bytes, base64-encoded: never re-wrapped text, never a long line.
    attachment: MIMEBase = MIMEApplication(part.content, subtype or "octet-stream")
    if maintype != "application":
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
    omit_from_headers: frozenset[str] = frozenset(),
    correlation_token: str | None = None,
    default_return_path: str | None = None,
) -> WireMessage:
    """The wire form of a stored message; raises `MessageBuildError` for unusable payloads.

    `correlation_token` goes in `X-Genro-Mail-Token` and in the generated Message-ID
    (`<token@domain>`); `default_return_path` is the envelope sender of a message that sets
    no `return_path` (the bounce mailbox, so DSNs reach it).

    `omit_from_headers` (address keys) leaves those recipients out of To/Cc, for the copy sent
    through a server without SMTPUTF8 when they need it (they are refused, not sent).
    """
    sender = _addresses([str(_required(payload, "from"))], "from")[0]
    to = _addresses(split_recipients(payload.get("to")), "to")
    subject = str(_required(payload, "subject"))
    cc = _addresses(split_recipients(payload.get("cc")), "cc")
    bcc = _addresses(split_recipients(payload.get("bcc")), "bcc")
    if not (to or cc or bcc):
        raise MessageBuildError("missing 'to'")
    reply_to = _addresses(split_recipients(payload.get("reply_to")), "reply_to")
    return_path = payload.get("return_path") or default_return_path
    envelope_sender = _addresses([str(return_path)], "return_path")[0] if return_path else sender
    client_id = str(payload.get("id") or "")

    body = None if attachments else _plain_ascii_body(payload)
    msg: MIMEBase | None = None
    if body is None:
        msg = _body(payload)
        if attachments:
            mixed = MIMEMultipart("mixed")
            mixed.attach(msg)
            for part in attachments:
                mixed.attach(_attachment_part(part))
            msg = mixed
        for sub in msg.walk():
            if sub is not msg:
                del sub["MIME-Version"]  # the MIME classes add it to every part; once is enough

    h = _HeaderBlock(omit_from_headers)
    h.addresses("From", [sender])
    h.addresses("To", to)
    h.text("Subject", subject)
    if cc:
        h.addresses("Cc", cc)
    if reply_to:
        h.addresses("Reply-To", reply_to)
    message_id = normalise_message_id(
        str(payload.get("message_id") or "")
        or _token_message_id(correlation_token, sender)
        or stable_message_id(
            tenant_id=tenant_id, message_id=client_id, message_pk=message_pk, sender=sender.envelope
        )
    )
    h.text("Message-ID", message_id)
    h.text("Date", _date(math.floor(time.time() if date_ts is None else date_ts)))
    for name, value in (payload.get("headers") or {}).items():
        lower = name.lower()
        if value is None or lower in _NEVER_FROM_CUSTOM:
            continue
        text = str(value)
        if lower in _ADDRESS_HEADERS:
            h.addresses(name, _addresses(split_recipients(text), f"header {name!r}"))
        elif lower == "date":
            h.text(name, format_datetime(parsedate_to_datetime(text)))
        elif lower == "message-id":
            message_id = normalise_message_id(text)
            h.text(name, message_id)
        else:
            h.text(name, text)
    if client_id:
        h.text(MAIL_ID_HEADER, client_id)
    if correlation_token:
        h.text(TOKEN_HEADER, correlation_token)

    recipients = list({a.key: a for a in (*to, *cc, *bcc)}.values())
    needs_utf8 = (
        h.utf8
        or envelope_sender.smtputf8
        or any(a.smtputf8 for a in recipients if a.key not in omit_from_headers)
    )
    try:
        if body is None:
            assert msg is not None
            body = msg.as_bytes(policy=_MIME_POLICY)
        data = h.serialise(needs_utf8) + body
    except (UnicodeError, ValueError, TypeError, IndexError) as exc:
        raise MessageBuildError(f"cannot serialise message: {exc}") from exc
    if any(len(line) > MAX_LINE_OCTETS for line in data.split(b"\r\n")):
        # Cannot happen with the policies above; checked so a library change never sends one.
        raise MessageBuildError(f"a line is longer than {MAX_LINE_OCTETS} octets")
    return WireMessage(
        envelope_from=envelope_sender.envelope,
        recipients=[a.key for a in recipients],
        data=data,
        message_id=message_id,
        smtputf8=needs_utf8,
        utf8_recipients=frozenset(a.key for a in recipients if a.smtputf8),
    )
