"""`mail_proxy.db.storable`: text from outside as Postgres stores it (valid UTF-8, no NUL)."""

from __future__ import annotations

import json

import pytest

from mail_proxy.db import storable


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("250 OK", "250 OK"),
        ("550 caf\u00e9", "550 caf\u00e9"),  # already text: unchanged
        ("550 m\udcfcller", "550 m\ufffdller"),  # a Latin-1 byte kept by surrogateescape
        ("550 caf\udcc3\udca9", "550 caf\u00e9"),  # UTF-8 bytes kept one by one: decoded
        ("550 no\x00body", "550 no\ufffdbody"),
        ("lone \ud800 high surrogate", "lone ? high surrogate"),
    ],
)
def test_text(value: str, stored: str) -> None:
    assert storable.text(value) == stored
    stored.encode("utf-8")  # valid UTF-8


def test_json_value_cleans_keys_and_nested_values() -> None:
    value = {"a\x00": ["x\udcff", {"k": "\x00"}], "n": 1, "none": None}
    cleaned = storable.json_value(value)
    assert cleaned == {"a\ufffd": ["x\ufffd", {"k": "\ufffd"}], "n": 1, "none": None}
    assert "\\u0000" not in json.dumps(cleaned)
