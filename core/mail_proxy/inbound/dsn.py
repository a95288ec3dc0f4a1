# SPDX-License-Identifier: BUSL-1.1
"""Recognising a bounce and reading what it says (reference section 10, corrected).

`parse_bounce(raw)` returns a `BounceReport` or None for mail that is not a bounce (auto-replies,
replies, newsletters...). Two readers, in order:

1. RFC 3464 `multipart/report; report-type=delivery-status`, read with the standard library:
   per recipient `Final-Recipient` (else `Original-Recipient`), `Action`, `Status`,
   `Diagnostic-Code`. `failed` is a failure (hard for status class 5, soft for 4); `delayed` is
   a soft *warning* (reported, never a failure); `delivered`/`relayed`/`expanded` are not
   bounces at all.
2. Everything else (Exim, qmail, old sendmail, Exchange, Yahoo, Postfix without DSN...):
   `flufl.bounce` (GNU Mailman's detectors) finds the bounced addresses; the SMTP code and the
   reason are read from the text around them. Permanent failures are hard (soft when the text
   only shows a 4xx code); flufl's temporary failures are warnings.

Codes follow the reference: `Status: 5.1.1` -> "511"; a bare `550` stays "550". Reasons are
cut to 500 characters. The report also carries what correlation needs: the original message's
headers as returned (`original`), its `X-Genro-Mail-ID` values and Message-IDs, the DSN's own
envelope headers (where a VERP token comes back) and the whole text (last resort).
"""

from __future__ import annotations

import email
import logging
import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.parser import HeaderParser
from typing import Literal

from flufl.bounce import all_failures

from mail_proxy.mime import MAIL_ID_HEADER

log = logging.getLogger(__name__)

BounceType = Literal["hard", "soft"]
REASON_MAX = 500
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"\b([45]\d\d)\b")
_ADDRESS = re.compile(r"[\w.+'=-]+@[\w-]+(?:\.[\w-]+)+")
_MAIL_ID = re.compile(rf"^{MAIL_ID_HEADER}:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
_MESSAGE_ID = re.compile(r"^Message-ID:[ \t]*(<[^>\s]+>)", re.IGNORECASE | re.MULTILINE)
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response)|out of (the )?office|abwesenheit|risposta automatica"
    r"|fuori sede|r[ée]ponse automatique|vacation)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|delivery (status notification|failure|has failed)|returned mail|failure notice"
    r"|mail delivery (failed|failure|system)|could not be delivered|non remis|unzustellbar"
    r"|mancata consegna|nondeliverable)",
    re.IGNORECASE,
)
_DAEMON_FROM = re.compile(r"mailer-daemon|postmaster|mail-daemon|maildelivery", re.IGNORECASE)


@dataclass(frozen=True)
class BouncedRecipient:
    address: str  # lowercased
    bounce_type: BounceType
    code: str | None
    reason: str | None
    warning: bool = False  # `Action: delayed`: still being tried, not a failure


@dataclass(frozen=True)
class BounceReport:
    recipients: list[BouncedRecipient]
    reader: str  # "rfc3464" | "flufl" | "heuristic"
    original: str = ""  # the original message's headers as the bounce returned them
    mail_ids: list[str] = field(default_factory=list)  # X-Genro-Mail-ID values
    message_ids: list[str] = field(default_factory=list)  # the original's Message-ID(s)
    envelope: str = ""  # the bounce's To / Delivered-To / X-Original-To (VERP comes back here)
    text: str = ""  # every text part, decoded


def _code_of(status: str | None, diagnostic: str | None) -> str | None:
    for value in (status, diagnostic):
        if not value:
            continue
        match = _STATUS.search(value)
        if match:
            return "".join(match.groups())
        match = _SMTP_CODE.search(value)
        if match:
            return match[1]
    return None


def _clean_reason(value: str | None) -> str | None:
    if not value:
        return None
    text = " ".join(value.split())
    kind, sep, rest = text.partition(";")
    if sep and kind.strip().lower() in ("smtp", "x-postfix", "x-unix", "x-local", "x-exim"):
        text = rest.strip()
    return text[:REASON_MAX] or None


def _address_in(value: str | None) -> str | None:
    if not value:
        return None
    _, _, address = value.rpartition(";")
    match = _ADDRESS.search(address) or _ADDRESS.search(value)
    return match[0].lower() if match else None


def _text_of(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except (LookupError, ValueError):
        return ""
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def _all_text(msg: Message) -> str:
    """Every text part and returned header block, decoded, in order."""
    chunks: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if part is not msg and ctype in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                chunks.append(_headers_text(inner[0]))
            continue
        if part.get_content_maintype() == "text" or ctype in (
            "message/delivery-status",
            "message/rfc822-headers",
            "message/global-headers",
        ):
            if ctype == "message/delivery-status":
                chunks.extend(_headers_text(block) for block in _status_blocks(part))
            else:
                chunks.append(_text_of(part) or _raw_payload(part))
    return "\n".join(chunks)


def _raw_payload(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload
    if isinstance(payload, list):
        return "\n".join(_headers_text(p) for p in payload if isinstance(p, Message))
    return ""


def _headers_text(msg: Message) -> str:
    return "\n".join(f"{name}: {value}" for name, value in msg.items())


def _status_blocks(part: Message) -> list[Message]:
    """The field blocks of a delivery-status part (per-message block first)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    if isinstance(payload, str):
        text = _text_of(part) or payload
        return [HeaderParser().parsestr(chunk) for chunk in re.split(r"\r?\n\s*\r?\n", text)]
    return []


def _original_headers(msg: Message) -> str:
    """The returned original message's headers (message/rfc822 or *-headers part), if any."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if part is msg:
            continue
        if ctype in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return _headers_text(inner[0])
        if ctype in ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers"):
            return _text_of(part) or _raw_payload(part)
    return ""


def _dsn_recipients(msg: Message) -> list[BouncedRecipient] | None:
    """Recipients of an RFC 3464 report; None when the message has no delivery-status part."""
    status_parts = [
        part
        for part in msg.walk()
        if part.get_content_type() in ("message/delivery-status", "text/delivery-status")
    ]
    if not status_parts:
        return None
    found: list[BouncedRecipient] = []
    for part in status_parts:
        for block in _status_blocks(part)[1:] or _status_blocks(part):
            address = _address_in(block.get("Final-Recipient")) or _address_in(
                block.get("Original-Recipient")
            )
            if address is None:
                continue
            action = (block.get("Action") or "").strip().lower()
            status = block.get("Status")
            diagnostic = block.get("Diagnostic-Code")
            code = _code_of(status, diagnostic)
            reason = _clean_reason(diagnostic) or _clean_reason(status)
            if action in ("delivered", "relayed", "expanded"):
                continue  # a success notice, not a bounce
            if action == "delayed":
                found.append(BouncedRecipient(address, "soft", code, reason, warning=True))
                continue
            kind: BounceType = "soft" if code and code.startswith("4") else "hard"
            found.append(BouncedRecipient(address, kind, code, reason))
    return found


def _context_of(address: str, text: str) -> tuple[str | None, str | None]:
    """(code, reason) from the lines around `address` in a free-text bounce."""
    lines = [line.strip() for line in text.splitlines()]
    lowered = [line.lower() for line in lines]
    for i, line in enumerate(lowered):
        if address not in line:
            continue
        window = [ln for ln in lines[i : i + 6] if ln]
        joined = " ".join(window)
        code = _code_of(joined, joined)
        if code:
            reason_lines = [ln for ln in window if _STATUS.search(ln) or _SMTP_CODE.search(ln)]
            return code, _clean_reason(" ".join(reason_lines[:2]) or joined)
    code = _code_of(text, text)
    reason_lines = [ln for ln in lines if ln and (_STATUS.search(ln) or _SMTP_CODE.search(ln))]
    return code, _clean_reason(" ".join(reason_lines[:2])) if reason_lines else None


def _flufl_recipients(msg: Message, text: str) -> list[BouncedRecipient]:
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # third-party heuristics on hostile input: never let them crash a poller
        log.warning("bounce detectors failed on a message", exc_info=True)
        return []
    found: list[BouncedRecipient] = []
    for raw, warning in [*((a, False) for a in permanent), *((a, True) for a in temporary)]:
        address = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).lower()
        if "@" not in address or any(r.address == address for r in found):
            continue
        code, reason = _context_of(address, text)
        kind: BounceType = "soft" if warning or (code and code.startswith("4")) else "hard"
        found.append(BouncedRecipient(address, kind, code, reason, warning=warning))
    return found


def _is_auto_reply(msg: Message) -> bool:
    subject = str(msg.get("Subject") or "")
    auto = str(msg.get("Auto-Submitted") or "").lower()
    return bool(
        _AUTO_REPLY_SUBJECT.search(subject)
        or msg.get("X-Autoreply")
        or msg.get("X-Autorespond")
        or str(msg.get("Precedence") or "").lower() == "auto_reply"
        or auto.startswith("auto-replied")
    ) and not _BOUNCE_SUBJECT.search(subject)


def _looks_like_bounce(msg: Message) -> bool:
    return bool(
        _BOUNCE_SUBJECT.search(str(msg.get("Subject") or ""))
        or _DAEMON_FROM.search(str(msg.get("From") or ""))
        or _DAEMON_FROM.search(str(msg.get("Return-Path") or ""))
    )


def _heuristic_recipients(msg: Message, text: str) -> list[BouncedRecipient]:
    """The reference's last resort: a daemon's message with an SMTP code and an address."""
    code = _code_of(text, text)
    if code is None:
        return []
    own = {_address_in(str(msg.get(h) or "")) for h in ("From", "To", "Return-Path")}
    for match in _ADDRESS.finditer(text[:4000]):
        address = match[0].lower()
        if address not in own and "mailer-daemon" not in address and "postmaster" not in address:
            found_code, reason = _context_of(address, text)
            final_code = found_code or code
            kind: BounceType = "soft" if final_code.startswith("4") else "hard"
            return [BouncedRecipient(address, kind, final_code, reason)]
    return []


def _envelope(msg: Message) -> str:
    names = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
    return "\n".join(str(value) for name in names for value in msg.get_all(name) or ())


def parse_bounce(raw: bytes) -> BounceReport | None:
    """Read a message from a bounce mailbox; None when it is not a bounce."""
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    text = _all_text(msg)
    original = _original_headers(msg)
    if not original:
        # Free-text bounces append the original after a marker line; its headers follow it.
        original = text
    report_type = (msg.get_param("report-type") or "") if msg.is_multipart() else ""
    recipients = _dsn_recipients(msg)
    reader = "rfc3464"
    if recipients is None or (not recipients and str(report_type).lower() != "delivery-status"):
        if _is_auto_reply(msg) and not _looks_like_bounce(msg):
            return None
        recipients = _flufl_recipients(msg, text)
        reader = "flufl"
        if not recipients and _looks_like_bounce(msg):
            recipients = _heuristic_recipients(msg, text)
            reader = "heuristic"
    if not recipients:
        return None
    own_id = str(msg.get("Message-ID") or "").strip()
    return BounceReport(
        recipients=recipients,
        reader=reader,
        original=original,
        mail_ids=list(dict.fromkeys(_MAIL_ID.findall(original))),
        message_ids=[m for m in dict.fromkeys(_MESSAGE_ID.findall(original)) if m != own_id],
        envelope=_envelope(msg),
        text=text,
    )
