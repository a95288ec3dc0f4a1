"""Wire formats: report items, the client's answer, credentials, MIME, fetch-mode inference."""

from __future__ import annotations

import email
from email import policy

import pytest

from mail_proxy.db.reports import PendingEvent
from mail_proxy.mime import (
    AttachmentPart,
    MessageBuildError,
    build_message,
    clean_filename,
    md5_marker,
    stable_message_id,
)
from mail_proxy_sender.attachments.fetch import infer_mode
from mail_proxy_sender.attachments.http_auth import auth_headers, join_url, same_origin
from mail_proxy_sender.reports.items import report_item
from mail_proxy_sender.reports.reporter import parse_answer


def _event(kind: str, description: str | None = None, **meta: object) -> PendingEvent:
    return PendingEvent(1, "m1", kind, 1700, description, meta or None)


def test_report_items() -> None:
    assert report_item(_event("sent")) == {"id": "m1", "sent_ts": 1700}
    assert report_item(_event("error", "boom")) == {"id": "m1", "error_ts": 1700, "error": "boom"}
    assert report_item(_event("deferred", "rate_limit", deferred_ts=1760)) == {
        "id": "m1",
        "deferred_ts": 1760,
        "deferred_reason": "rate_limit",
    }
    assert report_item(_event("pec_timeout")) == {
        "id": "m1",
        "pec_event": "pec_timeout",
        "pec_ts": 1700,
    }
    assert report_item(_event("something_else")) is None


def test_parse_answer() -> None:
    answer = parse_answer({"ok": True, "queued": 15, "next_sync_after": 1706500800.5})
    assert (answer.queued, answer.next_sync_after) == (15, 1706500800)
    assert parse_answer("not json").queued == 0
    assert parse_answer({"queued": "many", "next_sync_after": None}).queued == 0


def test_auth_headers() -> None:
    assert auth_headers({"method": "bearer", "token": "T"}) == {"Authorization": "Bearer T"}
    assert auth_headers({"method": "bearer", "token": ""}) == {}
    assert auth_headers({"method": "basic", "user": "u", "password": "p"}) == {
        "Authorization": "Basic dTpw"
    }
    assert auth_headers({"method": "none"}) == {}
    assert auth_headers(None) == {}


def test_same_origin() -> None:
    assert same_origin("https://app.example.org/files/1", "https://app.example.org")
    assert same_origin("http://app.example.org:80/x", "http://APP.example.org")
    assert not same_origin("https://app.example.org.evil.test/x", "https://app.example.org")
    assert not same_origin("http://app.example.org/x", "https://app.example.org")
    assert not same_origin("https://app.example.org:8443/x", "https://app.example.org")
    assert not same_origin("https://app.example.org/x", None)


def test_join_url() -> None:
    assert join_url("https://a.b/", None, "/mail-proxy/sync") == "https://a.b/mail-proxy/sync"
    assert join_url("https://a.b", "/hook", "/x") == "https://a.b/hook"


@pytest.mark.parametrize(
    ("path", "mode"),
    [
        ("base64:AAAA", "base64"),
        ("https://x.y/f", "http_url"),
        ("/srv/f.pdf", "filesystem"),
        ("doc_id=1", "endpoint"),
    ],
)
def test_fetch_mode_inference(path: str, mode: str) -> None:
    assert infer_mode(path) == mode


def test_md5_marker_and_clean_filename() -> None:
    assert md5_marker("report_{MD5:ABC123}.pdf") == "abc123"
    assert clean_filename("report_{MD5:abc123}.pdf") == "report.pdf"
    assert clean_filename("{MD5:abc}") == "file.bin"


def test_stable_message_id_depends_only_on_the_stored_message() -> None:
    one = stable_message_id(tenant_id="t", message_id="m", message_pk=1, sender="a@b.cd")
    assert one == stable_message_id(tenant_id="t", message_id="m", message_pk=1, sender="a@b.cd")
    assert one != stable_message_id(tenant_id="t", message_id="m", message_pk=2, sender="a@b.cd")
    assert one.endswith("@b.cd>")


def test_build_message_plain_with_attachment() -> None:
    wire = build_message(
        {
            "id": "m1",
            "from": "a@b.cd",
            "to": ["x@y.zz"],
            "bcc": ["h@y.zz"],
            "subject": "Sì",
            "body": "caffè",
            "headers": {"Bcc": "leak@y.zz", "X-Genro-Mail-ID": "spoof"},
        },
        [AttachmentPart("d.csv", b"a,b\n", "text/csv")],
        tenant_id="t",
        message_pk=9,
    )
    assert wire.envelope_from == "a@b.cd"
    assert wire.recipients == ["x@y.zz", "h@y.zz"]
    msg = email.message_from_bytes(wire.data, policy=policy.default)
    assert msg["Subject"] == "Sì"
    assert msg["Bcc"] is None
    assert b"leak@" not in wire.data
    assert msg.get_all("X-Genro-Mail-ID") == ["m1"]
    body = next(iter(msg.iter_parts()))
    assert body.get_content().strip() == "caffè"
    [attachment] = list(msg.iter_attachments())
    assert (attachment.get_filename(), attachment.get_content_type()) == ("d.csv", "text/csv")


def test_a_bcc_only_message_says_undisclosed_recipients() -> None:
    built = build_message(
        {"from": "a@b.cd", "to": [], "bcc": ["h@b.cd"], "subject": "s", "body": "x"},
        [],
        tenant_id="t",
        message_pk=1,
    )
    assert built.recipients == ["h@b.cd"]
    parsed = email.message_from_bytes(built.data, policy=policy.default)
    assert parsed["To"] == "undisclosed-recipients:;"
    assert parsed["Bcc"] is None


def test_build_message_refuses_what_cannot_be_sent() -> None:
    with pytest.raises(MessageBuildError, match="missing 'to'"):
        build_message({"from": "a@b.cd", "subject": "s"}, [], tenant_id="t", message_pk=1)
