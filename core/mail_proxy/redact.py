# SPDX-License-Identifier: Apache-2.0
"""Keeping secrets out of responses and the command log, and encrypted at rest.

`redact` masks every value stored under a secret-bearing key, at any depth. `seal_client_auth`
/ `open_client_auth` encrypt and decrypt the secret fields of a tenant's `client_auth`.
"""

from __future__ import annotations

from typing import Any

from mail_proxy.encryption import SecretBox

MASK = "********"
SECRET_KEYS = frozenset(
    {
        "password",
        "imap_password",
        "bounce_imap_password",
        "smtp_password",
        "token",
        "api_token",
        "api_key",
        "secret",
        "signing_secret",
        "client_sync_password",
        "client_sync_token",
    }
)
_AUTH_SECRETS = ("token", "password")


def redact(value: Any) -> Any:
    """A copy of `value` with every secret replaced by `MASK` (empty values stay empty)."""
    if isinstance(value, dict):
        return {
            key: (MASK if key in SECRET_KEYS and item not in (None, "") else redact(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def seal_client_auth(
    box: SecretBox, auth: dict[str, Any] | None, previous: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """`client_auth` ready to store: secrets encrypted; a masked value keeps the stored one."""
    if auth is None:
        return None
    sealed = dict(auth)
    for key in _AUTH_SECRETS:
        value = sealed.get(key)
        if value == MASK and previous is not None:
            sealed[key] = previous.get(key)
        elif isinstance(value, str):
            sealed[key] = box.encrypt(value)
    return sealed


def open_client_auth(box: SecretBox, auth: dict[str, Any] | None) -> dict[str, Any] | None:
    """`client_auth` with its secrets decrypted, for the sender's outgoing calls only."""
    if auth is None:
        return None
    opened = dict(auth)
    for key in _AUTH_SECRETS:
        value = opened.get(key)
        if isinstance(value, str):
            opened[key] = box.decrypt(value)
    return opened
