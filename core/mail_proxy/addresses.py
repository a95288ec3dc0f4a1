"""Syntax checks for addresses and header values, run on every message at enqueue.

A pragmatic check, not full RFC 5322: it accepts `user@example.org` and
`Display Name <user@example.org>`, and refuses anything with CR/LF (header injection).
It is a compiled regex because it runs for every recipient of every message on the hot path.
"""

from __future__ import annotations

import re

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+|\"[^\"\r\n]+\""
_DOMAIN = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}|\[[0-9A-Fa-f:.]+\]"
)
_ADDR = rf"(?:{_LOCAL})@(?:{_DOMAIN})"
_BARE = re.compile(rf"^\s*({_ADDR})\s*$")
_NAMED = re.compile(rf"^\s*(?:\"[^\"\r\n]*\"|[^<>\"\r\n]*)\s*<({_ADDR})>\s*$")
_CRLF = re.compile(r"[\r\n]")


def has_crlf(value: str) -> bool:
    return _CRLF.search(value) is not None


def address_of(value: str) -> str | None:
    """The bare address in `value`, or None when it is not a valid address."""
    match = _BARE.match(value) or _NAMED.match(value)
    if match is None:
        return None
    addr = match[1]
    local = addr.rsplit("@", 1)[0]
    if len(addr) > 254 or local.startswith(".") or local.endswith(".") or ".." in local:
        return None
    return addr


def split_recipients(value: str | list[str] | None) -> list[str]:
    """Recipients as a list; a string may hold several, comma-separated (reference behaviour)."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    out: list[str] = []
    for item in items:
        if "," in item and "<" not in item and '"' not in item:
            out.extend(part.strip() for part in item.split(","))
        else:
            out.append(item.strip())
    return [part for part in out if part]
