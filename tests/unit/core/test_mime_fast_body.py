"""The direct writer of one-part ASCII bodies gives exactly the email package's bytes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mail_proxy import mime
from mail_proxy.mime import build_message

# Line ends of every kind, lone CRs, dots and "From " at line starts, form feeds (a line end
# for str.splitlines, not for the email package), and lines around the 998-octet limit.
_PIECES = st.sampled_from(
    ["\r\n", "\r", "\n", ".", "From ", "\x0c", "\t", " ", "a", "é", "=", "x" * 995, "y" * 997]
)
_TEXT = st.lists(_PIECES | st.text(max_size=8), max_size=12).map("".join)


def _stdlib(payload: dict[str, Any]) -> bytes:
    return mime._body(payload).as_bytes(policy=mime._MIME_POLICY)


@settings(max_examples=400, deadline=None)
@given(body=_TEXT, html=st.booleans())
def test_the_direct_body_is_the_email_packages_bytes(body: str, html: bool) -> None:
    payload = {"body": body, "content_type": "html" if html else None}
    direct = mime._plain_ascii_body(payload)
    if direct is None:
        assert not body.isascii() or max(map(len, body.splitlines() or [""])) > 996
    else:
        assert direct == _stdlib(payload)


@pytest.mark.parametrize(
    "payload",
    [
        {"body": "Hello\n"},
        {"body": ""},
        {"body": "<p>hi</p>\r\n", "content_type": "html"},
        {"body": "<p>hi</p>", "content_type": "html", "text_body": "hi"},
        {"body": "Prix spécial"},
        {"body": "x" * 2000},
    ],
)
def test_whole_messages_are_unchanged_by_the_shortcut(
    payload: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = {"from": "a@example.org", "to": "b@example.org", "subject": "s", **payload}
    fast = build_message(fields, [], tenant_id="t", message_pk=1, date_ts=0.0)
    monkeypatch.setattr(mime, "_plain_ascii_body", lambda payload: None)
    slow = build_message(fields, [], tenant_id="t", message_pk=1, date_ts=0.0)
    if "text_body" in payload:  # multipart: random boundaries, same shape
        assert fast.data.split(b"==")[0] == slow.data.split(b"==")[0]
    else:
        assert fast.data == slow.data
