# SPDX-License-Identifier: Apache-2.0
"""API tokens: generation and the one-way hash that is all the database ever keeps."""

import base64
import hashlib
import hmac
import secrets


def new_token() -> str:
    """A fresh 43-character URL-safe token (32 random bytes), the reference's format."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex of a token; unsalted is enough for 256-bit random values."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(given.encode(), expected.encode())


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
