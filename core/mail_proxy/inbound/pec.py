# SPDX-License-Identifier: BUSL-1.1
"""Reading PEC receipts (Posta Elettronica Certificata; reference section 11).

Every kind of message the PEC technical rules (DM 2 November 2005, section 3; AgID) define,
and what it becomes. A receipt is recognised by its `X-Ricevuta` header, else by the
`tipo` of its `daticert.xml`, else by its Subject prefix (case-insensitive; the reference's
short prefixes are kept beside the rules' own):

    X-Ricevuta / tipo          Subject prefix                   receipt           event
    accettazione               ACCETTAZIONE:                    accettazione      pec_acceptance
    presa-in-carico            PRESA IN CARICO:                 presa_in_carico   pec_acceptance
    avvenuta-consegna,         CONSEGNA:, AVVENUTA CONSEGNA:,   consegna          pec_delivery
      consegna (reference)       POSTA CERTIFICATA: AVVENUTA
                                 CONSEGNA: (reference)
    non-accettazione           AVVISO DI NON ACCETTAZIONE       non_accettazione  pec_error
                                 [PER VIRUS]:, NON ACCETTAZIONE:
    errore-consegna,           AVVISO DI MANCATA CONSEGNA       mancata_consegna  pec_error
      mancata-consegna           [PER VIRUS]:, MANCATA
      (reference)                CONSEGNA:, ERRORE CONSEGNA:
    preavviso-errore-consegna  AVVISO DI MANCATA CONSEGNA PER   preavviso_        pec_delivery_
                                 SUP. TEMPO MASSIMO:              mancata_consegna  warning
    rilevazione-virus          PROBLEMA DI SICUREZZA:           rilevazione_virus pec_error
    posta-certificata          POSTA CERTIFICATA:               not a receipt: certified mail
      (X-Trasporto, tipo)                                         sent to the mailbox; skipped
    (X-Trasporto: errore)      ANOMALIA MESSAGGIO:              not a receipt (anomaly
                                                                  envelope); skipped

States: `pec_error` is final for the message's PEC tracking (`is_pec` cleared, reference);
`pec_delivery_warning` is the rules' 12-hour notice that the recipient's provider has not yet
confirmed delivery: not final, the message stays PEC and a later `consegna` or
`errore-consegna` still arrives (the delivery timeout still applies). The final 24-hour notice
carries `errore-consegna`. With no `X-Ricevuta` nor `daticert.xml`, the Subject "AVVISO DI
MANCATA CONSEGNA PER SUP. TEMPO MASSIMO" is taken as the warning (the safe reading: an error
would end tracking).

The timestamp is the `Date` header, else `X-Data-Ricevuta`; the recipient `X-Destinatario`,
else the first address in the Subject; the error reason (errors and warnings) `X-Errore`,
else `daticert.xml`'s `errore-esteso`, else a body line starting `Errore:`/`Motivo:`/`Causa:`,
else a default naming the receipt. For correlation the receipt returns the original's
`X-Riferimento-Message-ID` (our generated Message-ID carries the token) and any
`X-Genro-Mail-ID` found in its parts.
"""

from __future__ import annotations

import email
import html
import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.utils import parsedate_to_datetime

from mail_proxy.inbound.dsn import REASON_MAX

WARNING_EVENT = "pec_delivery_warning"
RECEIPT_EVENTS = {
    "accettazione": "pec_acceptance",
    "presa_in_carico": "pec_acceptance",
    "consegna": "pec_delivery",
    "mancata_consegna": "pec_error",
    "non_accettazione": "pec_error",
    "rilevazione_virus": "pec_error",
    "preavviso_mancata_consegna": WARNING_EVENT,
}
_DEFAULT_REASONS = {
    "mancata_consegna": "delivery failed",
    "non_accettazione": "not accepted by the sender's PEC provider",
    "rilevazione_virus": "virus detected",
    "preavviso_mancata_consegna": "delivery not yet confirmed within the maximum time",
}
_BY_HEADER = {
    "accettazione": "accettazione",
    "presa-in-carico": "presa_in_carico",
    "avvenuta-consegna": "consegna",
    "consegna": "consegna",
    "mancata-consegna": "mancata_consegna",
    "errore-consegna": "mancata_consegna",
    "non-accettazione": "non_accettazione",
    "preavviso-errore-consegna": "preavviso_mancata_consegna",
    "rilevazione-virus": "rilevazione_virus",
}
# Specific before general: "... PER SUP. TEMPO MASSIMO" before "AVVISO DI MANCATA CONSEGNA",
# "POSTA CERTIFICATA: AVVENUTA CONSEGNA" (reference) before "POSTA CERTIFICATA:" (not ours).
_BY_SUBJECT = (
    ("avviso di mancata consegna per sup. tempo massimo", "preavviso_mancata_consegna"),
    ("avviso di mancata consegna", "mancata_consegna"),
    ("avviso di non accettazione", "non_accettazione"),
    ("posta certificata: avvenuta consegna", "consegna"),
    ("posta certificata:", None),
    ("anomalia messaggio:", None),
    ("problema di sicurezza:", "rilevazione_virus"),
    ("avvenuta consegna:", "consegna"),
    ("consegna:", "consegna"),
    ("non accettazione:", "non_accettazione"),
    ("accettazione:", "accettazione"),
    ("mancata consegna:", "mancata_consegna"),
    ("errore consegna:", "mancata_consegna"),
    ("presa in carico:", "presa_in_carico"),
)
_ADDRESS = re.compile(r"[\w.+'=-]+@[\w-]+(?:\.[\w-]+)+")
_ERROR_LINE = re.compile(r"^\s*(?:errore|motivo|causa)\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_MAIL_ID = re.compile(r"^X-Genro-Mail-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
# daticert.xml (rules section 4): <postacert tipo="..." errore="..."> ... <errore-esteso>.
_DATICERT_TYPE = re.compile(
    r"<postacert\b[^>]{0,400}?\btipo\s*=\s*[\"']([a-z-]{1,40})[\"']", re.IGNORECASE
)
_DATICERT_ERROR = re.compile(
    r"<errore-esteso\b[^>]{0,200}>([^<]{1,2000})</errore-esteso>", re.IGNORECASE
)
_DATICERT_MAX = 64 * 1024


@dataclass(frozen=True)
class PecReceipt:
    receipt_type: str  # accettazione | presa_in_carico | consegna | mancata_consegna | ...
    event: str  # pec_acceptance | pec_delivery | pec_error | pec_delivery_warning
    timestamp: int | None  # when the PEC provider issued it (epoch s)
    recipient: str | None
    error_reason: str | None
    reference_message_id: str | None  # X-Riferimento-Message-ID: the original's Message-ID
    mail_ids: list[str] = field(default_factory=list)
    text: str = ""  # headers and text parts, for correlation tokens


def _daticert(msg: Message) -> str:
    """The `daticert.xml` part's text (the provider's certification data), '' when absent."""
    for part in msg.walk():
        name = (part.get_filename() or "").lower()
        if name != "daticert.xml" and part.get_content_type() != "application/xml":
            continue
        try:
            payload = part.get_payload(decode=True)
        except (LookupError, ValueError):
            continue
        if isinstance(payload, bytes):
            return payload[:_DATICERT_MAX].decode("utf-8", errors="replace")
    return ""


def _receipt_type(msg: Message, daticert: str) -> str | None:
    header = str(msg.get("X-Ricevuta") or "").strip().lower()
    if header:
        return _BY_HEADER.get(header)
    match = _DATICERT_TYPE.search(daticert)
    if match:
        return _BY_HEADER.get(match[1].lower())
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


def _error_reason(msg: Message, daticert: str, text: str) -> str | None:
    error = msg.get("X-Errore")
    if error:
        return " ".join(str(error).split())[:REASON_MAX] or None
    extended = _DATICERT_ERROR.search(daticert)
    if extended:
        return " ".join(html.unescape(extended[1]).split())[:REASON_MAX] or None
    match = _ERROR_LINE.search(text)
    return match[1].strip()[:REASON_MAX] if match else None


def parse_pec_receipt(raw: bytes) -> PecReceipt | None:
    """Read a message from a PEC mailbox; None when it is not a receipt."""
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    daticert = _daticert(msg)
    kind = _receipt_type(msg, daticert)
    if kind is None:
        return None
    text = "\n".join(_texts(msg))
    recipient = str(msg.get("X-Destinatario") or "").strip() or None
    if recipient is None:
        match = _ADDRESS.search(str(msg.get("Subject") or ""))
        recipient = match[0] if match else None
    error_reason = None
    event = RECEIPT_EVENTS[kind]
    if kind in _DEFAULT_REASONS:
        error_reason = _error_reason(msg, daticert, text) or _DEFAULT_REASONS[kind]
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
