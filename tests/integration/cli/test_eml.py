"""The `.eml` → add-messages mapping on its own (no server needed)."""

from __future__ import annotations

import base64
from email.message import EmailMessage

import pytest

from mail_proxy_cli.eml import EmlError, message_from_eml


def _message(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    for name, value in {"From": "a@example.org", "To": "b@example.org", **headers}.items():
        msg[name.replace("_", "-")] = value
    return msg


def test_plain_text_only() -> None:
    msg = _message(Subject="Plain", Reply_To="Replies <r@example.org>", Bcc="hidden@example.org")
    msg.set_content("just text")
    payload = message_from_eml(bytes(msg))
    assert payload["content_type"] == "plain"
    assert payload["body"] == "just text\n"
    assert payload["reply_to"] == "Replies <r@example.org>"
    assert payload["bcc"] == ["hidden@example.org"]
    assert payload["id"].startswith("eml-")
    assert "message_id" not in payload
    assert "attachments" not in payload


def test_nested_attachments_and_unicode() -> None:
    msg = _message(Subject="Fattura n° 12", Message_ID="<x-1@example.org>")
    msg.set_content("testo")
    msg.add_alternative("<p>testo</p>", subtype="html")
    msg.add_attachment("riga;1\n", subtype="csv", filename="dati.csv")
    msg.add_attachment(b"\x89PNG", maintype="image", subtype="png", filename="logo.png")
    payload = message_from_eml(bytes(msg))
    assert payload["subject"] == "Fattura n° 12"
    assert payload["id"] == "x-1@example.org"
    assert payload["content_type"] == "html"
    assert payload["body"] == "<p>testo</p>\n"
    assert payload["text_body"] == "testo\n"
    names = [(a["filename"], a["mime_type"]) for a in payload["attachments"]]
    assert names == [("dati.csv", "text/csv"), ("logo.png", "image/png")]
    assert base64.b64decode(payload["attachments"][1]["storage_path"]) == b"\x89PNG"


def test_refuses_a_file_without_sender_or_recipient() -> None:
    msg = _message(Subject="x")
    del msg["From"]
    msg.set_content("x")
    with pytest.raises(EmlError, match="no From header"):
        message_from_eml(bytes(msg))
    msg = _message(Subject="x")
    del msg["To"]
    msg.set_content("x")
    with pytest.raises(EmlError, match="no recipient: no address in To, Cc or Bcc"):
        message_from_eml(bytes(msg))


@pytest.mark.parametrize("only", ["Cc", "Bcc"])
def test_cc_or_bcc_alone_is_a_valid_message(only: str) -> None:
    """RFC 5322 3.6.3: To is optional."""
    msg = _message(Subject="x", **{only: "Hidden <h@example.org>"})
    del msg["To"]
    msg.set_content("x")
    payload = message_from_eml(bytes(msg))
    assert payload["to"] == []
    assert payload[only.lower()] == ["Hidden <h@example.org>"]


def test_8bit_utf8_headers_are_read_as_utf8_and_rfc2047_words_decoded() -> None:
    raw = (
        "From: Zoë <a@example.org>\r\nTo: b@example.org\r\nSubject: Fattura n° 12 €\r\n"
        "X-Note: =?utf-8?q?caf=C3=A9?=\r\n\r\nbody\r\n"
    ).encode()
    payload = message_from_eml(raw)
    assert payload["subject"] == "Fattura n° 12 €"
    assert payload["from"] == "Zoë <a@example.org>"
    assert payload["headers"] == {"X-Note": "café"}
    folded = (
        b"From: a@example.org\r\nTo: b@example.org\r\n"
        b"Subject: =?utf-8?q?caf=C3=A9?=\r\n =?utf-8?q?_cr=C3=A8me?=\r\n\r\nx"
    )
    assert message_from_eml(folded)["subject"] == "café crème"


def test_8bit_bytes_that_are_not_utf8_are_refused_naming_the_header() -> None:
    raw = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: Fattura n\xb0 12\r\n\r\nx"
    with pytest.raises(EmlError, match=r"the Subject header has 8-bit bytes that are not UTF-8"):
        message_from_eml(raw)


def test_custom_headers_of_the_file_are_kept() -> None:
    msg = _message(
        Subject="News",
        List_Unsubscribe="<https://example.org/u/1>",
        In_Reply_To="<prev@example.org>",
        X_Campaign="spring",
        Received="from a by b",
        DKIM_Signature="v=1; a=rsa-sha256; d=example.org",
        Date="Tue, 1 Jul 2025 10:00:00 +0200",
    )
    msg.set_content("text")
    msg.add_alternative("<p>html</p>", subtype="html")
    payload = message_from_eml(bytes(msg))
    assert payload["headers"] == {
        "List-Unsubscribe": "<https://example.org/u/1>",
        "In-Reply-To": "<prev@example.org>",
        "X-Campaign": "spring",
    }
    assert (payload["body"], payload["text_body"]) == ("<p>html</p>\n", "text\n")


def test_8bit_bodies_and_file_names_are_utf8_or_refused() -> None:
    head = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
    undeclared = head + b"Content-Transfer-Encoding: 8bit\r\n\r\ncaff\xc3\xa8\r\n"
    assert message_from_eml(undeclared)["body"] == "caffè\n"
    latin1 = head + b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\ncaff\xe8\r\n"
    assert message_from_eml(latin1)["body"].startswith("caffè")
    garbled = head + b"Content-Transfer-Encoding: 8bit\r\n\r\ncaff\xe8\r\n"
    with pytest.raises(EmlError, match="the message body is not valid utf-8 text"):
        message_from_eml(garbled)
    mixed = (
        head + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nhi\r\n--b\r\n"
        b"Content-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="f\xc3\xa8.pdf"'
        b"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n"
    )
    [attachment] = message_from_eml(mixed)["attachments"]
    assert attachment["filename"] == "fè.pdf"
