"""Provider notifications as each provider documents them, signed with test keys made here.

SES via SNS ("Amazon SNS message and JSON formats", "Amazon SES notification contents"),
SendGrid Event Webhook ("Event Webhook reference", "Security features"), Mailgun webhooks
("Webhooks" / "Securing webhooks"), Postmark ("Bounce webhook", "Spam complaint webhook").
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from mail_proxy.feedback.ses import canonical_string

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"


@dataclass
class SnsSigner:
    """An RSA key and a self-signed certificate standing in for SNS's signing certificate."""

    key: rsa.RSAPrivateKey
    certificate_pem: bytes

    @classmethod
    def new(cls) -> SnsSigner:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert.public_bytes(serialization.Encoding.PEM))

    def sign(self, envelope: dict[str, Any], version: str = "2") -> dict[str, Any]:
        envelope = {**envelope, "SignatureVersion": version}
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        signature = self.key.sign(canonical_string(envelope), padding.PKCS1v15(), algorithm)
        envelope["Signature"] = base64.b64encode(signature).decode()
        return envelope


def sns_notification(message: dict[str, Any], cert_url: str, topic: str = TOPIC) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": topic,
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(message),
        "Timestamp": "2026-11-29T23:00:00.000Z",
        "SigningCertURL": cert_url,
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }


def sns_confirmation(cert_url: str, subscribe_url: str, topic: str = TOPIC) -> dict[str, Any]:
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a7",
        "TopicArn": topic,
        "Message": "You have chosen to subscribe to the topic. To confirm, visit SubscribeURL.",
        "SubscribeURL": subscribe_url,
        "Timestamp": "2026-11-29T23:00:00.000Z",
        "SigningCertURL": cert_url,
    }


def ses_bounce(
    recipient: str,
    *,
    message_id: str,
    hard: bool = True,
    headers: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent" if hard else "Transient",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": recipient,
                    "action": "failed",
                    "status": "5.1.1" if hard else "4.4.7",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": "2026-11-29T22:59:58.000Z",
            "feedbackId": "0100016e-bounce-" + recipient,
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        "mail": {
            "timestamp": "2026-11-29T22:59:50.000Z",
            "source": "sender@example.org",
            "messageId": "0100016e-ses-own-id",
            "destination": [recipient],
            "headersTruncated": False,
            "headers": headers
            if headers is not None
            else [{"name": "Message-ID", "value": message_id}],
            "commonHeaders": {"messageId": message_id, "subject": "Hello"},
        },
    }


def ses_complaint(recipient: str, *, message_id: str) -> dict[str, Any]:
    return {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": recipient}],
            "timestamp": "2026-11-29T23:00:00.000Z",
            "feedbackId": "0100016e-complaint-" + recipient,
            "complaintFeedbackType": "abuse",
        },
        "mail": {"messageId": "x", "commonHeaders": {"messageId": message_id}},
    }


@dataclass
class SendgridSigner:
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def new(cls) -> SendgridSigner:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_key(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        """Signed now unless `timestamp` (epoch seconds) says when."""
        timestamp = timestamp or str(int(time.time()))
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json",
        }


def sendgrid_events(recipient: str, *, message_id: str, **custom: str) -> list[dict[str, Any]]:
    return [
        {
            "email": recipient,
            "timestamp": 1795474233,
            "smtp-id": message_id,
            "event": "bounce",
            "type": "bounce",
            "bounce_classification": "Invalid Address",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
            "status": "5.1.1",
            "sg_event_id": "c2VuZGdyaWQtYm91bmNl",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            **custom,
        },
        {
            "email": "other@example.org",
            "timestamp": 1795474233,
            "event": "delivered",
            "sg_event_id": "ZGVsaXZlcmVk",
        },
    ]


def mailgun_failed(
    recipient: str,
    *,
    message_id: str,
    signing_key: str,
    severity: str = "permanent",
    event: str = "failed",
    variables: dict[str, str] | None = None,
    signed_at: int | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Signed now unless `signed_at` (epoch seconds) says when; a new token unless given (as
    Mailgun makes one per notification)."""
    timestamp = str(int(time.time()) if signed_at is None else signed_at)
    token = token or secrets.token_hex(25)
    signature = hmac.new(signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256)
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature.hexdigest()},
        "event-data": {
            "id": "G9Bn5sl1TC6nu79C8C0bwg",
            "timestamp": 1795474233.1,
            "event": event,
            "severity": severity,
            "reason": "bounce",
            "recipient": recipient,
            "delivery-status": {
                "code": 550,
                "message": "5.1.1 The email account that you tried to reach does not exist",
                "description": "",
                "attempt-no": 1,
            },
            "message": {"headers": {"message-id": message_id.strip("<>"), "to": recipient}},
            "user-variables": variables or {},
        },
    }


def postmark_bounce(
    recipient: str,
    *,
    message_id: str,
    metadata: dict[str, str] | None = None,
    type_: str = "HardBounce",
) -> dict[str, Any]:
    return {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": type_,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "Invitation",
        "MessageID": message_id.strip("<>"),
        "Metadata": metadata or {},
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": recipient,
        "From": "sender@example.org",
        "BouncedAt": "2026-11-29T23:00:00Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Hello",
    }


def postmark_complaint(recipient: str, *, message_id: str) -> dict[str, Any]:
    return {
        **postmark_bounce(recipient, message_id=message_id),
        "RecordType": "SpamComplaint",
        "Type": "SpamComplaint",
        "ID": 4323372036854775808,
    }


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
