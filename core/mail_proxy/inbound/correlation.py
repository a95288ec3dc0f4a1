# SPDX-License-Identifier: BUSL-1.1
"""Correlation tokens: how a bounce finds the message it is about, across tenants.

Client ids are unique per tenant only (two tenants may both send `INV-1`), so every message
carries an opaque token that names one stored message globally:

    token = base36(message pk) "." first 20 hex digits of HMAC-SHA256(secret, "mp:" pk)

The secret is the instance's `correlation_secret`; the HMAC means a forged DSN cannot point at
a message whose token it has not seen. The token travels in three places, so it survives the
many ways MTAs quote the original message (reference section 10's correlation bug, fixed):

- the `X-Genro-Mail-Token` header;
- the generated `Message-ID` (`<token@domain>`), when the client gives none;
- optionally (per tenant) the VERP envelope sender `local+token@domain`.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from mail_proxy.mime import TOKEN_HEADER

__all__ = ["TOKEN_HEADER", "find_tokens", "message_token", "verp_address"]

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_MAC_HEX = 20
TOKEN_PATTERN = re.compile(r"\b([0-9a-z]{1,13})\.([0-9a-f]{20})\b")


def _base36(value: int) -> str:
    digits = []
    while True:
        value, rest = divmod(value, 36)
        digits.append(_B36[rest])
        if value == 0:
            return "".join(reversed(digits))


def _mac(secret: str, message_pk: int) -> str:
    digest = hmac.new(secret.encode(), f"mp:{message_pk}".encode(), hashlib.sha256)
    return digest.hexdigest()[:_MAC_HEX]


def message_token(secret: str, message_pk: int) -> str:
    """The token of a stored message (the same on every retry)."""
    return f"{_base36(message_pk)}.{_mac(secret, message_pk)}"


def find_tokens(secret: str, text: str) -> list[int]:
    """The message pks of every valid token in `text`, in order of appearance, once each.
    Tokens whose HMAC does not match are ignored."""
    found: dict[int, None] = {}
    for match in TOKEN_PATTERN.finditer(text.lower()):
        try:
            pk = int(match[1], 36)
        except ValueError:
            continue
        if hmac.compare_digest(_mac(secret, pk), match[2]):
            found[pk] = None
    return list(found)


def verp_address(return_path: str, token: str) -> str:
    """VERP: `bounces@example.org` -> `bounces+<token>@example.org` (RFC 5233 subaddress)."""
    local, _, domain = return_path.rpartition("@")
    return f"{local}+{token}@{domain}"
