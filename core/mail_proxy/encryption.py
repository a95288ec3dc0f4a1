# SPDX-License-Identifier: Apache-2.0
"""AES-256-GCM for secrets at rest: a keyring, in the reference's `ENC:` format plus a key id.

Stored forms (both read; only the first is written):

    "ENC:" + key_id + ":" + base64(nonce[12] || ciphertext || tag[16])   keyed (this product)
    "ENC:" + base64(nonce[12] || ciphertext || tag[16])                  the reference (§8)

`key_id` is 8 hex digits derived from the key (a one-way fingerprint, never the key), so a value
names the key that sealed it. ``:`` is not in the base64 alphabet, so the two forms never mix up.
A keyring has one *primary* key, which encrypts, and any number of *previous* keys, which only
decrypt: rotation is "new primary, old key kept as previous, rows re-encrypted, old key dropped"
(see `mail_proxy.db.rotate` and the chart README's runbook). A value without a key id is tried
with every key, primary first.

Keys: the primary from ``MAIL_PROXY_ENCRYPTION_KEY`` (base64 of 32 bytes) or
``/run/secrets/encryption_key`` (32 raw bytes); previous keys from
``MAIL_PROXY_PREVIOUS_ENCRYPTION_KEYS`` (base64 keys separated by commas or whitespace). Unlike
the reference, a bad key is an error, not a silent fallback to plaintext, and a secret is never
stored without a key (`SecretBox.encrypt` raises `NoEncryptionKey`).

    python -c "from mail_proxy.encryption import generate_key; print(generate_key())"
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mail_proxy.errors import ConfigError, EncryptionError, NoEncryptionKey, UnknownEncryptionKey

PREFIX = "ENC:"
KEY_ENV = "MAIL_PROXY_ENCRYPTION_KEY"
PREVIOUS_KEYS_ENV = "MAIL_PROXY_PREVIOUS_ENCRYPTION_KEYS"
KEY_FILE = Path("/run/secrets/encryption_key")
_NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[0-9a-f]{8}$")
_KEY_ID_DOMAIN = b"mail-proxy encryption key id\x00"


def generate_key() -> str:
    """A new key, base64 of 32 random bytes (the value for MAIL_PROXY_ENCRYPTION_KEY)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def decode_key(value: str, *, source: str = KEY_ENV) -> bytes:
    """Decode a base64 key and check its length; `source` names where it came from."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{source} is not valid base64") from exc
    if len(raw) != 32:
        raise ConfigError(f"{source} must decode to 32 bytes, got {len(raw)}")
    return raw


def key_id(key: bytes) -> str:
    """The 8-hex-digit id written in front of every value `key` seals (SHA-256 fingerprint)."""
    return hashlib.sha256(_KEY_ID_DOMAIN + key).hexdigest()[:8]


def decode_keys(value: str, *, source: str = PREVIOUS_KEYS_ENV) -> list[bytes]:
    """Base64 keys separated by commas or whitespace (empty: none)."""
    parts = [part for part in re.split(r"[\s,]+", value) if part]
    return [decode_key(part, source=f"{source} (key {i + 1})") for i, part in enumerate(parts)]


def load_key(
    env: Mapping[str, str] | None = None,
    key_file: Path = KEY_FILE,
    fallback_file: Path | None = None,
) -> bytes | None:
    """The primary key: env first, then the secrets file, then `fallback_file` (embedded mode).

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


def load_box(
    env: Mapping[str, str] | None = None,
    key_file: Path = KEY_FILE,
    fallback_file: Path | None = None,
) -> SecretBox:
    """The process keyring: `load_key`'s primary plus MAIL_PROXY_PREVIOUS_ENCRYPTION_KEYS."""
    source = os.environ if env is None else env
    previous = decode_keys(source.get(PREVIOUS_KEYS_ENV, ""))
    return SecretBox(load_key(source, key_file, fallback_file), previous=previous)


def is_encrypted(value: str | None) -> bool:
    return value is not None and value.startswith(PREFIX)


def stored_key_id(stored: str | None) -> str | None:
    """The key id a stored value names; None for plaintext and for the reference's form."""
    if stored is None or not stored.startswith(PREFIX):
        return None
    head, sep, _ = stored[len(PREFIX) :].partition(":")
    return head if sep and _KEY_ID.match(head) else None


class SecretBox:
    """A keyring: encrypts with the primary key, decrypts with any key it holds.

    `SecretBox(key)` is a ring of one; `previous` adds keys that only decrypt. Without a primary
    it refuses to encrypt (`NoEncryptionKey`) but still reads values sealed by a previous key.
    """

    def __init__(self, key: bytes | None, *, previous: Iterable[bytes] = ()) -> None:
        self._primary = key_id(key) if key is not None else None
        self._keys: dict[str, AESGCM] = {}
        for raw in [key, *previous]:
            if raw is not None:
                self._keys.setdefault(key_id(raw), AESGCM(raw))

    @property
    def has_key(self) -> bool:
        return self._primary is not None

    @property
    def primary_key_id(self) -> str | None:
        """The id of the key new values are sealed with."""
        return self._primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id this ring can read, primary first."""
        return tuple(self._keys)

    def encrypt(self, plaintext: str | None) -> str | None:
        """Keyed `ENC:` form of a secret; empty values pass through; no key -> `NoEncryptionKey`."""
        if plaintext is None or plaintext == "":
            return plaintext
        if self._primary is None:
            raise NoEncryptionKey()
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._keys[self._primary].encrypt(nonce, plaintext.encode(), None)
        return f"{PREFIX}{self._primary}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, stored: str | None) -> str | None:
        """Plaintext of a stored value; values without the prefix are returned as they are.

        Errors: `UnknownEncryptionKey` when the value names a key this ring lacks,
        `EncryptionError` when it cannot be read with any key (never holding the value).
        """
        if stored is None or not stored.startswith(PREFIX):
            return stored
        if not self._keys:
            raise EncryptionError("a stored secret is encrypted but no key is configured")
        kid = stored_key_id(stored)
        if kid is not None:
            aead = self._keys.get(kid)
            if aead is None:
                raise UnknownEncryptionKey(kid)
            candidates = [aead]
            body = stored[len(PREFIX) + len(kid) + 1 :]
        else:
            candidates = list(self._keys.values())
            body = stored[len(PREFIX) :]
        try:
            blob = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise EncryptionError("a stored secret is not valid base64") from exc
        nonce, sealed = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
        for aead in candidates:
            try:
                return aead.decrypt(nonce, sealed, None).decode()
            except (InvalidTag, ValueError):
                continue
        raise EncryptionError("a stored secret cannot be decrypted with this key")

    def needs_reencrypt(self, stored: str | None) -> bool:
        """True for an encrypted value not sealed by the primary key (or sealed without id)."""
        return is_encrypted(stored) and stored_key_id(stored) != self._primary
