# SPDX-License-Identifier: Apache-2.0
"""Text from outside (an SMTP server's reply, an exception's message) as Postgres stores it.

A `text` or `jsonb` value must be valid UTF-8 without NUL; a server's reply is decoded with
`surrogateescape` (aiosmtplib, `replies`), so a Latin-1 "ü" arrives as the lone surrogate
"\\udcfc", and a NUL as itself. Either makes the whole statement fail, and an outcome batch
that fails is tried again for ever: one hostile or old server would keep every outcome of
the sender from being stored. So each value written from such text goes through `text` or
`json_value` first: bytes that are not UTF-8 become U+FFFD, NUL becomes U+FFFD.
"""

from __future__ import annotations

from typing import Any

_REPLACEMENT = "\ufffd"


def text(value: str) -> str:
    """`value` as valid UTF-8 without NUL (see the module doc); unchanged when it already is."""
    if value.isascii():
        return value.replace("\x00", _REPLACEMENT) if "\x00" in value else value
    try:
        raw = value.encode("utf-8", "surrogateescape")  # the bytes a server sent, as sent
    except UnicodeEncodeError:  # a surrogate no decoding made (from JSON, say)
        raw = value.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace").replace("\x00", _REPLACEMENT)


def optional_text(value: str | None) -> str | None:
    return None if value is None else text(value)


def json_value(value: Any) -> Any:
    """`value` (JSON-shaped: dicts, lists, scalars) with every string, keys too, as `text`."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {text(str(k)): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return value
