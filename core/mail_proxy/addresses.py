# SPDX-License-Identifier: Apache-2.0
"""Addresses as people write them, checked and normalised with `email-validator`.

Accepted forms: `user@example.org`, `Display Name <user@example.org>`, `"Doe, Jane" <j@x.org>`,
`<user@example.org>`, a domain literal `user@[192.0.2.1]`; display names may be non-ASCII and
unquoted (`Bücher <news@bücher.example>`), as mail clients write them. Anything with CR/LF is
refused (header injection).

Normalisation (RFC 5321 section 2.4, RFC 5890): the domain is case-folded and IDNA-encoded, so
`info@bücher.example` goes on the wire as `info@xn--bcher-kva.example`; the local part keeps its
case (only the receiving server may fold it) and is NFC-normalised. A non-ASCII local part
(`jörg@example.org`, RFC 6531) needs a server that offers SMTPUTF8: `Address.smtputf8` says so.
Two spellings of one mailbox (`ann@example.org`, `ann@EXAMPLE.org`) share one `key`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

MAX_ADDRESS_LENGTH = 254  # RFC 5321 section 4.5.3.1.3 (path 256 octets, minus the brackets)


@dataclass(frozen=True)
class Address:
    """One parsed mailbox.

    `envelope` is what RCPT TO / MAIL FROM carry (IDNA A-label domain); `key` identifies the
    mailbox for deduplication and suppression lists (the same as `envelope`); `display_name`
    is the phrase before `<...>` ("" when none); `smtputf8` is true when the local part is
    non-ASCII and the message can only go through a server offering SMTPUTF8.
    """

    display_name: str
    local_part: str
    domain: str  # A-label, lowercase
    smtputf8: bool

    @property
    def envelope(self) -> str:
        return f"{self.local_part}@{self.domain}"

    @property
    def key(self) -> str:
        return self.envelope


def has_crlf(value: str) -> bool:
    return "\r" in value or "\n" in value


def _split_display(value: str) -> tuple[str, str] | None:
    """(display name, address) of `Name <addr>` / `<addr>` / `addr`; None when malformed."""
    text = value.strip()
    if not text.endswith(">"):
        if "<" in text or ">" in text:
            return None
        return "", text
    start = text.rfind("<")
    if start < 0:
        return None
    name = text[:start].strip()
    if len(name) >= 2 and name[0] == '"' and name[-1] == '"':
        name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    elif '"' in name or "<" in name or ">" in name:
        return None
    return name, text[start + 1 : -1].strip()


@functools.lru_cache(maxsize=8192)  # senders repeat: one `from` for a whole campaign
def parse_address(value: str) -> Address | None:
    """The mailbox in `value`, or None when it is not a valid address (see module doc)."""
    if has_crlf(value):
        return None
    parts = _split_display(value)
    if parts is None:
        return None
    name, addr = parts
    if not addr or any(c.isspace() for c in addr):
        return None
    try:
        checked = validate_email(
            addr,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_domain_literal=True,
            # `.test` domains are what test setups use; refusing them helps nobody.
            test_environment=True,
        )
    except EmailNotValidError:
        return None
    domain = (checked.ascii_domain or checked.domain).lower()
    local = checked.local_part
    if len(local.encode()) + 1 + len(domain) > MAX_ADDRESS_LENGTH:
        return None
    return Address(name, local, domain, smtputf8=not local.isascii())


def address_of(value: str) -> str | None:
    """The envelope form of the address in `value` (A-label domain), or None when invalid."""
    parsed = parse_address(value)
    return parsed.envelope if parsed is not None else None


def normalised_address(value: str) -> str | None:
    """The key that identifies the mailbox in `value` (dedupe, suppression), or None."""
    parsed = parse_address(value)
    return parsed.key if parsed is not None else None


def split_recipients(value: str | list[str] | None) -> list[str]:
    """Recipients as a list; a string may hold several, comma-separated (reference behaviour).

    Commas inside a quoted display name or inside `<...>` do not separate recipients, so
    `"Doe, John" <j@example.org>, x@example.org` is two recipients.
    """
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    out: list[str] = []
    for item in items:
        out.extend(_split_outside_quotes(item) if "," in item else [item])
    return [part.strip() for part in out if part.strip()]


def _split_outside_quotes(text: str) -> list[str]:
    parts: list[str] = []
    start = 0
    quoted = False
    angle = False
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            angle = True
        elif char == ">" and not quoted:
            angle = False
        elif char == "," and not quoted and not angle:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def submitted_forms(*fields: str | list[str] | None) -> dict[str, str]:
    """Each recipient's normalised `key` -> the recipient as the app wrote it in `fields`
    (to, cc, bcc: lists or comma-separated strings), e.g. `info@xn--bcher-kva.example` ->
    `Info <info@Bücher.example>`. Two spellings of one mailbox are one recipient: the first
    spelling is shown. Invalid entries are skipped (intake refused them already)."""
    out: dict[str, str] = {}
    for value in fields:
        for item in split_recipients(value):
            parsed = parse_address(item)
            if parsed is not None:
                out.setdefault(parsed.key, item)
    return out
