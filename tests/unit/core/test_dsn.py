"""Parsing bounces: RFC 3464 reports and the free-text formats of real MTAs; what is ignored."""

from __future__ import annotations

import pytest

from mail_proxy.inbound.dsn import parse_bounce
from tests.samples import bounces

ORIGINAL = bounces.original_headers(mail_id="INV-7", message_id="<abc@example.org>")


@pytest.mark.parametrize("name", sorted(bounces.FORMATS))
def test_each_format_names_the_recipient_a_hard_code_and_the_original(name: str) -> None:
    report = parse_bounce(bounces.FORMATS[name](ORIGINAL, rcpt="Gone@Example.com"))
    assert report is not None
    [recipient] = report.recipients
    assert recipient.address == "gone@example.com"
    assert recipient.bounce_type == "hard"
    assert recipient.code is not None
    assert recipient.code.startswith("5")
    assert recipient.reason
    assert len(recipient.reason) <= 500
    assert not recipient.warning
    assert report.mail_ids == ["INV-7"]
    assert report.message_ids == ["<abc@example.org>"]


def test_rfc3464_codes_follow_the_reference() -> None:
    report = parse_bounce(bounces.postfix(ORIGINAL))
    assert report is not None
    assert report.reader == "rfc3464"
    assert report.recipients[0].code == "511"  # Status 5.1.1 -> "511"
    assert report.recipients[0].reason is not None
    assert report.recipients[0].reason.startswith("550 5.1.1")  # "smtp;" prefix dropped


def test_delayed_is_a_soft_warning_and_a_4xx_failure_is_soft() -> None:
    delayed = parse_bounce(bounces.delayed(ORIGINAL))
    assert delayed is not None
    [recipient] = delayed.recipients
    assert (recipient.bounce_type, recipient.warning, recipient.code) == ("soft", True, "441")
    failed = parse_bounce(bounces.soft_failed(ORIGINAL))
    assert failed is not None
    [recipient] = failed.recipients
    assert (recipient.bounce_type, recipient.warning, recipient.code) == ("soft", False, "422")


def test_success_notices_auto_replies_and_other_mail_are_not_bounces() -> None:
    assert parse_bounce(bounces.auto_reply()) is None
    assert parse_bounce(bounces.plain_reply()) is None
    relayed = bounces.postfix(ORIGINAL).replace(b"Action: failed", b"Action: relayed")
    assert parse_bounce(relayed) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x",
        b"From: MAILER-DAEMON@x\r\nSubject: Undeliverable\r\n\r\n" + b"550 " * 100_000,
        b"Content-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822;\r\nAction: failed",
        b"Content-Type: text/plain; charset=bogus-charset\r\n"
        b"From: mailer-daemon@x.example\r\n\r\n550 5.1.1 <a@b.example> unknown",
    ],
)
def test_hostile_input_never_raises(raw: bytes) -> None:
    report = parse_bounce(raw)
    if report is not None:
        for recipient in report.recipients:
            assert "@" in recipient.address
            assert recipient.reason is None or len(recipient.reason) <= 500
