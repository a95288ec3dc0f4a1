# SPDX-License-Identifier: BUSL-1.1
"""Signed, expiring download links: `<base>/download/<token>/<filename>` (SPEC section 13).

Token: `<file_id>-<expires_at>-<signature>`, where `file_id` is 32 hex digits, `expires_at` epoch
seconds and `signature` the first 32 hex digits (128 bits) of HMAC-SHA256(secret,
`"<file_id>:<filename>:<expires_at>"`) - the reference's layout (section 6.6) with a longer
signature and a configured secret instead of its hard-coded one. Any pod holding the same secret
verifies any link. A link whose signature does not match (tampered id, name or expiry) is
`LinkInvalid` (HTTP 404); a genuine link past its expiry is `LinkExpired` (HTTP 410).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote

_TOKEN = re.compile(r"^([0-9a-f]{32})-([0-9]{1,12})-([0-9a-f]{32})$")
_SIGNATURE_HEX = 32


class LinkInvalid(Exception):
    """The token is malformed or its signature does not match: answer 404, say nothing more."""


class LinkExpired(Exception):
    """A genuine link past its expiry (or its file's lifespan): answer 410."""


@dataclass(frozen=True)
class VerifiedLink:
    file_id: str
    expires_at: int


class LinkSigner:
    """Signs and verifies download tokens with one secret (bytes, at least 32 of them)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the download secret must be at least 32 bytes")
        self._secret = secret

    def _signature(self, file_id: str, filename: str, expires_at: int) -> str:
        text = f"{file_id}:{filename}:{expires_at}".encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, text, hashlib.sha256).hexdigest()[:_SIGNATURE_HEX]

    def token(self, file_id: str, filename: str, expires_at: int) -> str:
        return f"{file_id}-{expires_at}-{self._signature(file_id, filename, expires_at)}"

    def verify(self, token: str, filename: str, *, now: float) -> VerifiedLink:
        """The link's file id and expiry; raises `LinkInvalid` or `LinkExpired`."""
        match = _TOKEN.match(token)
        if match is None:
            raise LinkInvalid
        file_id, expires_text, signature = match.groups()
        expires_at = int(expires_text)
        expected = self._signature(file_id, filename, expires_at)
        if not hmac.compare_digest(expected, signature):
            raise LinkInvalid
        if now >= expires_at:
            raise LinkExpired
        return VerifiedLink(file_id, expires_at)


def download_url(base_url: str, token: str, filename: str) -> str:
    """The link to the API's download route under `base_url` (a public URL of any API pod)."""
    return f"{base_url.rstrip('/')}/download/{token}/{quote(filename, safe='')}"
