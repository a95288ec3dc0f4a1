"""Provider feedback, pure: signatures verified with test keys, payloads parsed as documented,
forgeries and odd shapes refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from mail_proxy.feedback import mailgun, postmark, sendgrid, ses
from mail_proxy.feedback.events import PayloadInvalid, SignatureInvalid
from tests.provider_samples import (
    TOPIC,
    SendgridSigner,
    SnsSigner,
    basic,
    mailgun_failed,
    postmark_bounce,
    postmark_complaint,
    sendgrid_events,
    ses_bounce,
    ses_complaint,
    sns_confirmation,
    sns_notification,
)

CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem"
PATTERN = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
MID = "<abc123@example.org>"


@pytest.fixture(scope="module")
def sns() -> SnsSigner:
    return SnsSigner.new()


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_signatures_verify_and_ses_bounces_parse(sns: SnsSigner, version: str) -> None:
    envelope = sns.sign(
        sns_notification(ses_bounce("gone@example.net", message_id=MID), CERT_URL), version
    )
    ses.verify(envelope, sns.certificate_pem)
    ses.check_topic(envelope, [TOPIC])
    [event] = ses.notification_events(envelope, now=0)
    assert event.kind == "bounce"
    assert event.bounce_type == "hard"
    assert event.recipient == "gone@example.net"
    assert event.code == "511"
    assert event.reason == "smtp; 550 5.1.1 user unknown"
    assert event.message_ids == [MID]
    assert event.event_ts > 1_700_000_000


def test_a_changed_sns_message_or_another_key_is_refused(sns: SnsSigner) -> None:
    envelope = sns.sign(sns_notification(ses_bounce("a@example.net", message_id=MID), CERT_URL))
    tampered = {
        **envelope,
        "Message": envelope["Message"].replace("a@example.net", "b@example.net"),
    }
    with pytest.raises(SignatureInvalid):
        ses.verify(tampered, sns.certificate_pem)
    with pytest.raises(SignatureInvalid):
        ses.verify(envelope, SnsSigner.new().certificate_pem)
    for broken in ({**envelope, "SignatureVersion": "3"}, {**envelope, "Signature": "%%%"}):
        with pytest.raises(SignatureInvalid):
            ses.verify(broken, sns.certificate_pem)
    with pytest.raises(SignatureInvalid):
        ses.check_topic(envelope, ["arn:aws:sns:eu-west-1:999999999999:other"])


def test_confirmations_are_signed_over_their_own_fields(sns: SnsSigner) -> None:
    envelope = sns.sign(
        sns_confirmation(
            CERT_URL, "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
        )
    )
    ses.verify(envelope, sns.certificate_pem)
    forged = {**envelope, "SubscribeURL": "https://evil.example/confirm"}
    with pytest.raises(SignatureInvalid):
        ses.verify(forged, sns.certificate_pem)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        (CERT_URL, True),
        ("https://sns.cn-north-1.amazonaws.com.cn/x.pem", True),
        ("http://sns.eu-west-1.amazonaws.com/x.pem", False),
        ("https://sns.eu-west-1.amazonaws.com.evil.example/x.pem", False),
        ("https://evil.example/sns.eu-west-1.amazonaws.com/x.pem", False),
        ("https://user@sns.eu-west-1.amazonaws.com/x.pem", False),
        ("https://sns.eu-west-1.amazonaws.com/x.txt", False),
        ("https://169.254.169.254/latest.pem", False),
        ("https://[::1]/x.pem", False),
        (None, False),
        ("https://" + "a" * 3000, False),
    ],
)
def test_only_sns_hosts_may_serve_certificates(url: object, allowed: bool) -> None:
    assert ses.sns_url_allowed(url, PATTERN) is allowed


def test_ses_complaints_soft_bounces_and_other_notifications(sns: SnsSigner) -> None:
    complaint = ses.notification_events(
        sns_notification(ses_complaint("angry@example.net", message_id=MID), CERT_URL), now=5
    )
    assert [(e.kind, e.bounce_type, e.recipient) for e in complaint] == [
        ("complaint", "hard", "angry@example.net")
    ]
    soft = ses.notification_events(
        sns_notification(ses_bounce("full@example.net", message_id=MID, hard=False), CERT_URL), 5
    )
    assert soft[0].bounce_type == "soft"
    assert soft[0].code == "447"
    delivery = sns_notification({"notificationType": "Delivery", "mail": {}}, CERT_URL)
    assert ses.notification_events(delivery, 5) == []
    odd = ses_bounce("not an address", message_id=MID)
    assert ses.notification_events(sns_notification(odd, CERT_URL), 5) == []
    with pytest.raises(PayloadInvalid):
        ses.notification_events({**delivery, "Message": "not json"}, 5)
    with pytest.raises(PayloadInvalid):
        ses.parse_envelope(b'{"Type": "Other"}')
    with pytest.raises(PayloadInvalid):
        ses.parse_envelope(b"\xff\xfe")


def test_sendgrid_signed_events() -> None:
    signer = SendgridSigner.new()
    body = json.dumps(sendgrid_events("gone@example.net", message_id=MID, mp="x")).encode()
    headers = {k.lower(): v for k, v in signer.headers(body).items()}
    now = time.time()
    sendgrid.verify(headers, body, signer.public_key, now=now, max_age=600)
    [event] = sendgrid.events(body, now=0)  # `delivered` is not feedback
    assert (event.kind, event.bounce_type, event.recipient, event.code) == (
        "bounce",
        "hard",
        "gone@example.net",
        "511",
    )
    assert event.message_ids == [MID]
    assert "x" in event.references
    with pytest.raises(SignatureInvalid):
        sendgrid.verify(headers, body + b" ", signer.public_key, now=now, max_age=600)
    with pytest.raises(SignatureInvalid):
        sendgrid.verify(headers, body, SendgridSigner.new().public_key, now=now, max_age=600)
    with pytest.raises(SignatureInvalid):
        sendgrid.verify({}, body, signer.public_key, now=now, max_age=600)
    with pytest.raises(PayloadInvalid):
        sendgrid.events(b'{"event": "bounce"}', 0)
    blocked = [
        {"email": "a@example.net", "event": "bounce", "type": "blocked", "reason": "421 try later"}
    ]
    assert sendgrid.events(json.dumps(blocked).encode(), 0)[0].bounce_type == "soft"
    spam = [{"email": "a@example.net", "event": "spamreport"}]
    assert sendgrid.events(json.dumps(spam).encode(), 0)[0].kind == "complaint"
    with pytest.raises(ValueError, match="public key"):
        sendgrid.load_public_key("not a key")


def test_mailgun_hmac() -> None:
    payload = mailgun_failed("gone@example.net", message_id=MID, signing_key="key-123456")
    mailgun.verify(payload, "key-123456", now=time.time(), max_age=600)
    [event] = mailgun.events(payload, 0)
    assert (event.kind, event.bounce_type, event.code) == ("bounce", "hard", "511")
    assert event.message_ids == [MID]
    with pytest.raises(SignatureInvalid):
        mailgun.verify(payload, "another-key", now=time.time(), max_age=600)
    with pytest.raises(SignatureInvalid):
        mailgun.verify(
            {"event-data": payload["event-data"]}, "key-123456", now=time.time(), max_age=600
        )
    soft = mailgun_failed("a@example.net", message_id=MID, signing_key="k", severity="temporary")
    assert mailgun.events(soft, 0)[0].bounce_type == "soft"
    complained = mailgun_failed(
        "a@example.net", message_id=MID, signing_key="k", event="complained"
    )
    assert mailgun.events(complained, 0)[0].kind == "complaint"
    with pytest.raises(PayloadInvalid):
        mailgun.events({"signature": {}}, 0)
    with pytest.raises(PayloadInvalid):
        mailgun.parse(b"[1]")


def test_postmark_credentials_and_records() -> None:
    config = {"user": "pm", "password": "s3cret-pass", "token": "tok-123456"}
    postmark.verify({k.lower(): v for k, v in basic("pm", "s3cret-pass").items()}, config)
    postmark.verify({"x-webhook-token": "tok-123456"}, config)
    for headers in (
        {k.lower(): v for k, v in basic("pm", "wrong").items()},
        {"x-webhook-token": "nope"},
        {"authorization": "Basic %%%"},
        {},
    ):
        with pytest.raises(SignatureInvalid):
            postmark.verify(headers, config)
    with pytest.raises(SignatureInvalid):
        postmark.verify({"x-webhook-token": ""}, {"token": ""})
    body = json.dumps(
        postmark_bounce("gone@example.net", message_id=MID, metadata={"k": "v"})
    ).encode()
    [event] = postmark.events(body, 0)
    assert (event.kind, event.bounce_type, event.code) == ("bounce", "hard", "511")
    assert "v" in event.references
    soft = json.dumps(
        postmark_bounce("a@example.net", message_id=MID, type_="SoftBounce") | {"Inactive": False}
    )
    assert postmark.events(soft.encode(), 0)[0].bounce_type == "soft"
    ignored = json.dumps(postmark_bounce("a@example.net", message_id=MID, type_="AutoResponder"))
    assert postmark.events(ignored.encode(), 0) == []
    spam = json.dumps(postmark_complaint("a@example.net", message_id=MID)).encode()
    assert postmark.events(spam, 0)[0].kind == "complaint"
    with pytest.raises(PayloadInvalid):
        postmark.events(b"nope", 0)


def test_sendgrid_and_mailgun_refuse_stale_or_future_signatures() -> None:
    """Replay protection: a signature whose timestamp is outside the window is refused even
    though it matches; at the window's edge it is still taken."""
    signer = SendgridSigner.new()
    body = json.dumps(sendgrid_events("gone@example.net", message_id=MID)).encode()
    now = 1_800_000_000
    for signed_at, ok in (
        (now, True),
        (now - 600, True),
        (now - 601, False),
        (now + 600, True),
        (now + 601, False),
        (now - 86_400, False),
    ):
        headers = {k.lower(): v for k, v in signer.headers(body, str(signed_at)).items()}
        payload = mailgun_failed(
            "a@example.net", message_id=MID, signing_key="k", signed_at=signed_at
        )
        if ok:
            sendgrid.verify(headers, body, signer.public_key, now=now, max_age=600)
            mailgun.verify(payload, "k", now=now, max_age=600)
            continue
        with pytest.raises(SignatureInvalid, match=r"old|future"):
            sendgrid.verify(headers, body, signer.public_key, now=now, max_age=600)
        with pytest.raises(SignatureInvalid, match=r"old|future"):
            mailgun.verify(payload, "k", now=now, max_age=600)
    # A signed timestamp that is not a number is refused, however it is signed.
    # Nor is one that is not whole seconds in digits: another split of the signed string.
    for junk in ("soon", "nan", "1e400", "", f"{now}e0", f" {now}", f"{now}.0", f"+{now}"):
        headers = {k.lower(): v for k, v in signer.headers(body, junk or " ").items()}
        with pytest.raises(SignatureInvalid):
            sendgrid.verify(headers, body, signer.public_key, now=now, max_age=600)
        payload = mailgun_failed("a@example.net", message_id=MID, signing_key="k")
        payload["signature"]["timestamp"] = junk
        sig = hmac.new(b"k", f"{junk}{payload['signature']['token']}".encode(), hashlib.sha256)
        payload["signature"]["signature"] = sig.hexdigest()
        with pytest.raises(SignatureInvalid):
            mailgun.verify(payload, "k", now=now, max_age=600)


def test_absurd_provider_timestamps_fall_back_to_now() -> None:
    for raw in (b"1e300", b"Infinity", b"-5", b"NaN", b'"soon"', b"true"):
        sg = b'[{"email": "a@example.net", "event": "bounce", "timestamp": ' + raw + b"}]"
        assert sendgrid.events(sg, now=1234)[0].event_ts == 1234, raw
        payload = mailgun_failed("a@example.net", message_id=MID, signing_key="k")
        payload["event-data"]["timestamp"] = json.loads(raw)
        assert mailgun.events(payload, 1234)[0].event_ts == 1234, raw
