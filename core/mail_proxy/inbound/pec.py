# SPDX-License-Identifier: BUSL-1.1
"""Reading PEC receipts (Posta Elettronica Certificata; reference section 11).

A receipt is recognised by its `X-Ricevuta` header, else by its Subject prefix:

    X-Ricevuta                          Subject prefix          receipt           event
    accettazione                        ACCETTAZIONE:           accettazione      pec_acceptance
    presa-in-carico                     PRESA IN CARICO:        presa_in_carico   pec_acceptance
    avvenuta-consegna / consegna        AVVENUTA CONSEGNA:      consegna          pec_delivery
    mancata-consegna / errore-consegna  MANCATA/ERRORE CONS.:   mancata_consegna  pec_error
    non-accettazione                    NON ACCETTAZIONE:       non_accettazione  pec_error

Anything else in a PEC mailbox (ordinary certified mail, anomaly notices) is not a receipt.
The timestamp is the `Date` header, else `X-Data-Ricevuta`; the recipient `X-Destinatario`,
else the first address in the Subject; the error reason (errors only) `X-Errore`, else a body
line starting `Errore:`/`Motivo:`/`Causa:`. For correlation the receipt returns the original's
`X-Riferimento-Message-ID` (our generated Message-ID carries the token) and any
`X-Genro-Mail-ID` found in its parts.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.utils import parsedate_to_datetime

from mail_proxy.inbound.dsn import REASON_MAX

RECEIPT_EVENTS = {
    "accettazione": "pec_acceptance",
    "presa_in_carico": "pec_acceptance",
    "consegna": "pec_delivery",
    "mancata_consegna": "pec_error",
    "non_accettazione": "pec_error",
}
_BY_HEADER = {
    "accettazione": "accettazione",
    "presa-in-carico": "presa_in_carico",
    "avvenuta-consegna": "consegna",
    "consegna": "consegna",
    "mancata-consegna": "mancata_consegna",
    "errore-consegna": "mancata_consegna",
    "non-accettazione": "non_accettazione",
}
# Longest first: "POSTA CERTIFICATA: AVVENUTA CONSEGNA" before "AVVENUTA CONSEGNA".
_BY_SUBJECT = (
    ("posta certificata: avvenuta consegna", "consegna"),
    ("avvenuta consegna:", "consegna"),
    ("non accettazione:", "non_accettazione"),
    ("accettazione:", "accettazione"),
    ("mancata consegna:", "mancata_consegna"),
    ("errore consegna:", "mancata_consegna"),
    ("presa in carico:", "presa_in_carico"),
)
_ADDRESS = re.compile(r"[\w.+'=-]+@[\w-]+(?:\.[\w-]+)+")
_ERROR_LINE = re.compile(r"^\s*(?:errore|motivo|causa)\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_MAIL_ID = re.compile(r"^X-Genro-Mail-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class PecReceipt:
    receipt_type: str  # accettazione | presa_in_carico | consegna | mancata_consegna | ...
    event: str  # pec_acceptance | pec_delivery | pec_error
    timestamp: int | None  # when the PEC provider issued it (epoch s)
    recipient: str | None
    error_reason: str | None
    reference_message_id: str | None  # X-Riferimento-Message-ID: the original's Message-ID
    mail_ids: list[str] = field(default_factory=list)
    text: str = ""  # headers and text parts, for correlation tokens


def _receipt_type(msg: Message) -> str | None:
    header = str(msg.get("X-Ricevuta") or "").strip().lower()
    if header:
        return _BY_HEADER.get(header)
    subject = " ".join(str(msg.get("Subject") or "").split()).lower()
    for prefix, kind in _BY_SUBJECT:
        if subject.startswith(prefix):
            return kind
    return None


def _timestamp(msg: Message) -> int | None:
    for name in ("Date", "X-Data-Ricevuta"):
        value = msg.get(name)
        if not value:
            continue
        try:
            return int(parsedate_to_datetime(str(value)).timestamp())
        except (TypeError, ValueError, IndexError, OverflowError):
            continue
    return None


def _texts(msg: Message) -> list[str]:
    chunks = ["\n".join(f"{k}: {v}" for k, v in msg.items())]
    for part in msg.walk():
        if part is msg and msg.is_multipart():
            continue
        if part.get_content_type() in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                chunks.append("\n".join(f"{k}: {v}" for k, v in inner[0].items()))
            continue
        if part.get_content_maintype() != "text":
            continue
        try:
            payload = part.get_payload(decode=True)
        except (LookupError, ValueError):
            continue
        if isinstance(payload, bytes):
            charset = part.get_content_charset() or "utf-8"
            try:
                chunks.append(payload.decode(charset, errors="replace"))
            except LookupError:
                chunks.append(payload.decode("utf-8", errors="replace"))
    return chunks


def parse_pec_receipt(raw: bytes) -> PecReceipt | None:
    """Read a message from a PEC mailbox; None when it is not a receipt."""
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    kind = _receipt_type(msg)
    if kind is None:
        return None
    text = "\n".join(_texts(msg))
    recipient = str(msg.get("X-Destinatario") or "").strip() or None
    if recipient is None:
        match = _ADDRESS.search(str(msg.get("Subject") or ""))
        recipient = match[0] if match else None
    error_reason = None
    event = RECEIPT_EVENTS[kind]
    if event == "pec_error":
        error = msg.get("X-Errore")
        if error:
            error_reason = " ".join(str(error).split())[:REASON_MAX]
        else:
            match = _ERROR_LINE.search(text)
            error_reason = match[1].strip()[:REASON_MAX] if match else None
    reference = str(msg.get("X-Riferimento-Message-ID") or "").strip() or None
    return PecReceipt(
        receipt_type=kind,
        event=event,
        timestamp=_timestamp(msg),
        recipient=recipient.lower() if recipient else None,
        error_reason=error_reason,
        reference_message_id=reference,
        mail_ids=list(dict.fromkeys(_MAIL_ID.findall(text))),
        text=text,
    )
