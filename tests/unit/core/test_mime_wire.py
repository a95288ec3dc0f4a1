"""Every message valid on the wire (issue 10 item 1): line limits, folding, encodings,
multipart/alternative, addresses. Parsed back with the standard library to check content."""

from __future__ import annotations

import email
from email import policy
from typing import Any

import pytest

from mail_proxy.intake import rejection_reason
from mail_proxy.mime import AttachmentPart, build_message, header_problem


def _build(attachments: list[AttachmentPart] | None = None, **fields: Any) -> bytes:
    payload = {"id": "m1", "from": "a@example.org", "to": ["b@example.org"], "subject": "s"}
    payload.update(fields)
    return build_message(payload, attachments or [], tenant_id="t", message_pk=1).data


def _headers(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def _parsed(data: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    assert not msg.defects
    return msg


LONG_TOKEN = "https://example.org/" + "x" * 1180
CASES: list[dict[str, Any]] = [
    {"subject": LONG_TOKEN},  # one unbroken 1,200-char token
    {"subject": "Prix spécial " * 120},
    {"subject": "a" * 70 + " " + "b" * 3000},
    {"from": "Ünïcødé Büchér " * 12 + "<a@example.org>"},  # long non-ASCII display name
    {"to": [f"Person Number {i} <p{i}@example.org>" for i in range(60)]},
    {"headers": {"X-Long": "y" * 2000}},
    {"headers": {"X-Words": "word " * 400}},
    {"reply_to": "Sales <sales@example.org>, support@example.org"},
]


@pytest.mark.parametrize("fields", CASES)
def test_headers_are_folded_within_78_and_read_back_the_same(fields: dict[str, Any]) -> None:
    data = _build(**fields)
    for line in _headers(data):
        # 78 where we fold; a first word that cannot fold may take the name's width more
        assert len(line) <= 78 + 20 or line.startswith(b"X-Long: "), line[:60]
        assert len(line) <= 998
        assert line.rstrip(b" ").endswith(b":") is False, line
    msg = _parsed(data)
    if "subject" in fields:
        # (the standard library may double a space where a raw word meets an encoded-word)
        assert msg["Subject"].split() == fields["subject"].split()
        assert not msg["Subject"].startswith(" ")
        assert not _headers(data)[0].endswith(b"Subject:")  # never an empty first line


def test_a_long_machine_header_stays_one_readable_line_when_it_fits() -> None:
    url = "<https://lists.example.org/unsubscribe/" + "a" * 600 + ">"
    data = _build(headers={"List-Unsubscribe": url})
    assert f"List-Unsubscribe: {url}".encode() in _headers(data)


def test_mostly_ascii_subject_encodes_only_the_words_that_need_it() -> None:
    data = _build(subject="Your invoice from Müller & Co is ready")
    [line] = [h for h in _headers(data) if h.startswith(b"Subject:")]
    assert line.startswith(b"Subject: Your invoice from ")
    assert b"is ready" in line
    assert _parsed(data)["Subject"] == "Your invoice from Müller & Co is ready"


def test_encoded_words_are_at_most_75_chars() -> None:
    data = _build(
        **{"from": "Bücher Verlag Gesellschaft mit beschränkter Haftung " * 3 + "<a@ex.org>"}
    )
    for word in data.replace(b"\r\n", b" ").split(b" "):
        if word.startswith(b"=?"):
            assert len(word.rstrip(b",")) <= 75


@pytest.mark.parametrize(
    ("body", "cte"),
    [
        ("Hello\nworld\n", "7bit"),
        ("<html>" + "<p>minified</p>" * 200 + "</html>", "quoted-printable"),  # one long line
        ("caffè e cornetto\n", "quoted-printable"),
        ("Привет мир " * 50, "base64"),
    ],
)
def test_transfer_encoding_follows_the_content(body: str, cte: str) -> None:
    data = _build(body=body, content_type="html")
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    msg = _parsed(data)
    assert msg["Content-Transfer-Encoding"] == cte
    assert msg.get_content().replace("\r\n", "\n") == body


def test_text_and_html_go_as_multipart_alternative_text_first() -> None:
    data = _build(body="<p>Hi</p>", content_type="html", text_body="Hi")
    msg = _parsed(data)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg.get_body(("plain",)).get_content().strip() == "Hi"  # type: ignore[union-attr]
    assert msg.get_body(("html",)).get_content().strip() == "<p>Hi</p>"  # type: ignore[union-attr]


def test_alternative_with_attachments_is_wrapped_in_mixed() -> None:
    data = _build(
        [AttachmentPart("r.pdf", b"%PDF", "application/pdf")],
        body="<p>Hi</p>",
        content_type="html",
        text_body="Hi",
    )
    msg = _parsed(data)
    assert msg.get_content_type() == "multipart/mixed"
    first, attachment = list(msg.iter_parts())
    assert first.get_content_type() == "multipart/alternative"
    assert attachment.get_filename() == "r.pdf"
    assert data.count(b"MIME-Version") == 1


def test_v06_body_and_content_type_are_unchanged() -> None:
    assert _parsed(_build(body="Hi", content_type="plain")).get_content_type() == "text/plain"
    assert _parsed(_build(body="<b>Hi</b>", content_type="html")).get_content_type() == "text/html"
    # text_body without an HTML body has nothing to be an alternative to
    plain = _parsed(_build(body="Hi", text_body="other"))
    assert plain.get_content_type() == "text/plain"
    assert plain.get_content().strip() == "Hi"


def test_custom_headers_cannot_break_the_mime_structure() -> None:
    data = _build(headers={"Content-Type": "text/evil", "MIME-Version": "9", "Bcc": "x@ex.org"})
    msg = _parsed(data)
    assert msg.get_content_type() == "text/plain"
    assert data.count(b"MIME-Version") == 1
    assert b"x@ex.org" not in data


def test_message_id_without_brackets_is_completed() -> None:
    assert _parsed(_build(message_id="abc@example.org"))["Message-ID"] == "<abc@example.org>"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"headers": {"Bad Name": "v"}}, "invalid header name 'Bad Name'"),
        ({"headers": {"X-" + "a" * 80: "v"}}, "invalid header name"),
        ({"headers": {"Date": "yesterday"}}, "invalid date in header 'Date'"),
        ({"headers": {"Sender": "not an address"}}, "invalid address in header 'Sender'"),
        ({"message_id": "has space@example.org"}, "invalid message_id"),
        ({"message_id": "<" + "a" * 300 + "@x.org>"}, "invalid message_id"),
    ],
)
def test_what_cannot_be_made_valid_is_refused_at_intake(
    fields: dict[str, Any], reason: str
) -> None:
    payload = {
        "id": "m1",
        "tenant_id": "t",
        "account_id": "a",
        "from": "a@example.org",
        "to": ["b@example.org"],
        "subject": "s",
        **fields,
    }
    found = rejection_reason(payload)
    assert found is not None
    assert found.startswith(reason)
    assert (
        header_problem({"headers": {"X-Fine": "ok", "Date": "Tue, 1 Jul 2025 10:00:00 +0200"}})
        is None
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("to", ["info@bücher.example"]),
        ("to", ["Bücher <news@bücher.example>"]),
        ("to", ["jörg@example.org"]),
        ("reply_to", ["Sales <sales@example.org>", "support@example.org"]),
        ("reply_to", "Sales <sales@example.org>, support@example.org"),
        ("from", "Bücher <news@bücher.example>"),
    ],
)
def test_addresses_as_people_write_them_are_accepted(field: str, value: Any) -> None:
    payload = {
        "id": "m1",
        "tenant_id": "t",
        "account_id": "a",
        "from": "a@example.org",
        "to": ["b@example.org"],
        "subject": "s",
        field: value,
    }
    assert rejection_reason(payload) is None
    wire = build_message(payload, [], tenant_id="t", message_pk=1)
    assert all(len(line) <= 998 for line in wire.data.split(b"\r\n"))
