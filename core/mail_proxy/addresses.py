# SPDX-License-Identifier: Apache-2.0
"""Syntax checks for addresses and header values, run on every message at enqueue.

A pragmatic check, not full RFC 5322: it accepts `user@example.org` and
`Display Name <user@example.org>`, and refuses anything with CR/LF (header injection).
It is a compiled regex because it runs for every recipient of every message on the hot path.
"""

from __future__ import annotations

import functools
import re

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+|\"[^\"\r\n]+\""
_DOMAIN = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}|\[[0-9A-Fa-f:.]+\]"
)
_ADDR = rf"(?:{_LOCAL})@(?:{_DOMAIN})"
_BARE = re.compile(rf"^\s*({_ADDR})\s*$")
_NAMED = re.compile(rf"^\s*(?:\"[^\"\r\n]*\"|[^<>\"\r\n]*)\s*<({_ADDR})>\s*$")


def has_crlf(value: str) -> bool:
    return "\r" in value or "\n" in value


@functools.lru_cache(maxsize=4096)  # senders repeat: one `from` for a whole campaign
def address_of(value: str) -> str | None:
    """The bare address in `value`, or None when it is not a valid address."""
    if has_crlf(value):  # `\s` in the patterns would let a line break through
        return None
    match = _BARE.match(value) or _NAMED.match(value)
    if match is None:
        return None
    addr = match[1]
    local = addr.rsplit("@", 1)[0]
    if len(addr) > 254 or local.startswith(".") or local.endswith(".") or ".." in local:
        return None
    return addr


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
