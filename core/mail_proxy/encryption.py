# SPDX-License-Identifier: Apache-2.0
"""AES-256-GCM for secrets at rest, in the reference's `ENC:` format.

Stored form: ``"ENC:" + base64(nonce[12] || ciphertext || tag[16])``. The key is 32 bytes, taken
from ``MAIL_PROXY_ENCRYPTION_KEY`` (base64) or from ``/run/secrets/encryption_key`` (raw bytes).
Unlike the reference, a bad key is an error, not a silent fallback to plaintext, and a secret is
never stored without a key (`SecretBox.encrypt` raises `NoEncryptionKey`).

    python -c "from mail_proxy.encryption import generate_key; print(generate_key())"
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mail_proxy.errors import ConfigError, EncryptionError, NoEncryptionKey

PREFIX = "ENC:"
KEY_ENV = "MAIL_PROXY_ENCRYPTION_KEY"
KEY_FILE = Path("/run/secrets/encryption_key")
_NONCE_BYTES = 12


def generate_key() -> str:
    """A new key, base64 of 32 random bytes (the value for MAIL_PROXY_ENCRYPTION_KEY)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def decode_key(value: str) -> bytes:
    """Decode a base64 key and check its length."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{KEY_ENV} is not valid base64") from exc
    if len(raw) != 32:
        raise ConfigError(f"{KEY_ENV} must decode to 32 bytes, got {len(raw)}")
    return raw


def load_key(
    env: dict[str, str] | None = None,
    key_file: Path = KEY_FILE,
    fallback_file: Path | None = None,
) -> bytes | None:
    """The configured key: env first, then the secrets file, then `fallback_file` (embedded mode).

    `fallback_file` holds a base64 key; it is created when missing, so a laptop instance keeps
    one key for its whole life. Returns None when no source is configured.
    """
    source = os.environ if env is None else env
    if value := source.get(KEY_ENV):
        return decode_key(value)
    if key_file.exists():
        raw = key_file.read_bytes().strip()
        if len(raw) != 32:
            raise ConfigError(f"{key_file} must hold exactly 32 raw bytes, got {len(raw)}")
        return raw
    if fallback_file is not None:
        if not fallback_file.exists():
            fallback_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(fallback_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(generate_key() + "\n")
        return decode_key(fallback_file.read_text())
    return None


def is_encrypted(value: str | None) -> bool:
    return value is not None and value.startswith(PREFIX)


class SecretBox:
    """Encrypts and decrypts stored secrets with one key (or refuses to, without one)."""

    def __init__(self, key: bytes | None) -> None:
        self._aead = AESGCM(key) if key is not None else None

    @property
    def has_key(self) -> bool:
        return self._aead is not None

    def encrypt(self, plaintext: str | None) -> str | None:
        """`ENC:` form of a secret; empty values pass through; no key -> `NoEncryptionKey`."""
        if plaintext is None or plaintext == "":
            return plaintext
        if self._aead is None:
            raise NoEncryptionKey()
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), None)
        return PREFIX + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, stored: str | None) -> str | None:
        """Plaintext of a stored value; values without the prefix are returned as they are."""
        if stored is None or not stored.startswith(PREFIX):
            return stored
        if self._aead is None:
            raise EncryptionError("a stored secret is encrypted but no key is configured")
        try:
            blob = base64.b64decode(stored[len(PREFIX) :], validate=True)
            nonce, sealed = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
            return self._aead.decrypt(nonce, sealed, None).decode()
        except (binascii.Error, ValueError, InvalidTag) as exc:
            raise EncryptionError("a stored secret cannot be decrypted with this key") from exc
