# SPDX-License-Identifier: Apache-2.0
"""Keeping secrets out of responses, logs and the command log, and encrypted at rest.

`redact` masks every value stored under a secret-bearing key, at any depth; `redact_url` masks
the credentials a URL may carry (user info, query values); `redact_urls` does both for a
payload (every string that looks like a URL). A key is secret-bearing when it is one of
`SECRET_KEYS` or its name says so (`is_secret_key`: password, secret, token, API/signing/private
key, authorization, cookie, credential), so a custom header such as `X-Api-Key` or
`Authorization` a caller added is masked too. `restore_masked_url` keeps a stored URL when a
client writes back the masked form it was shown. `seal_client_auth`
/ `open_client_auth` encrypt and decrypt the secret fields of a tenant's `client_auth`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
# Key names that say they hold a secret (compared lower-case, `-` read as `_`).
_SECRET_NAME = re.compile(
    r"pass(?:word|wd|phrase)|secret|token|api_?key|signing_?key|private_?key|access_?key"
    r"|authorization|cookie|credential|session_?id"
)
_AUTH_SECRETS = ("token", "password")
# Keys whose values are URLs a caller chose: shown and logged with `redact_url` (issue 9).
URL_KEYS = frozenset(
    {
        "storage_path",
        "url",
        "client_base_url",
        "client_sync_url",
        "storage_url",
        "public_base_url",
    }
)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def redact_url(url: str) -> str:
    """`url` with its user info and every query value masked, for showing and logging.

    `https://user:pw@host/p?sig=abc&x=1#f` -> `https://********@host/p?sig=********&x=********`.
    Never raises: a URL that cannot be parsed is cut before its user info and query.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = MASK + "@" + netloc.rpartition("@")[2]
        query = "&".join(
            (item.partition("=")[0] + "=" + MASK) if "=" in item else MASK
            for item in parts.query.split("&")
            if item
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        head = url.split("?", 1)[0].split("#", 1)[0]
        scheme, sep, rest = head.partition("://")
        if sep and "@" in rest.split("/", 1)[0]:
            rest = MASK + "@" + rest.partition("@")[2]
        return scheme + sep + rest


def redact_text(text: str) -> str:
    """`text` with every URL in it passed through `redact_url` (for log lines, errors)."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


def redact_urls(value: Any) -> Any:
    """A copy of `value` where every string that contains a URL has it redacted, at any depth."""
    if isinstance(value, dict):
        return {key: redact_urls(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_urls(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def is_secret_key(key: object) -> bool:
    """True for a key whose value is a secret: `SECRET_KEYS`, or a name that says so."""
    if not isinstance(key, str):
        return False
    name = key.lower().replace("-", "_")
    return name in SECRET_KEYS or _SECRET_NAME.search(name) is not None


def restore_masked_url(given: str | None, stored: str | None) -> str | None:
    """`stored` when `given` is the masked form of it (a client writing back what it was
    shown, as a masked password keeps the stored one), else `given`."""
    if given and stored and given != stored and given == redact_url(stored):
        return stored
    return given


def url_may_hold_secret(value: object) -> bool:
    """True for a URL string with user info or a query (what `redact_url` masks)."""
    return isinstance(value, str) and "://" in value and ("@" in value or "?" in value)


def _redacted(key: str, item: Any) -> Any:
    if is_secret_key(key) and item not in (None, "") and not isinstance(item, bool):
        return MASK
    if key in URL_KEYS and url_may_hold_secret(item):
        return redact_url(item)
    return redact(item)


def redact(value: Any) -> Any:
    """A copy of `value` with every secret replaced by `MASK` (empty values stay empty), and
    URLs under `URL_KEYS` without their user info and query values."""
    if isinstance(value, dict):
        return {key: _redacted(key, item) for key, item in value.items()}
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
