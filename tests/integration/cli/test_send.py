"""`NAME TENANT send FILE.eml`: the file becomes a queued message, and is delivered over SMTP."""

from __future__ import annotations

import base64
from email import message_from_bytes, policy
from email.message import EmailMessage

from tests.integration.cli.conftest import Lab, SmtpSink, wait_for, write_eml


def test_send_maps_the_eml_onto_a_queued_message(lab: Lab) -> None:
    lab.run("tenants", "add", "t-eml")
    lab.run("t-eml", "accounts", "add", "only", "--host", "127.0.0.1", "--port", "9")
    lab.run("t-eml", "suspend")  # keep it queued: this test is about what was queued
    eml = write_eml(lab.cli.root / "mapped.eml", attachment=b"\x00\x01binary\xff")

    sent = lab.json("t-eml", "send", str(eml), "--priority", "high", "--batch", "B-7")
    assert sent == {"id": "hello-1@example.org", "ok": True, "queued": 1, "rejected": []}

    [record] = lab.json("t-eml", "messages", "list")
    message = record["message"]
    assert record["account_id"] == "only"  # the tenant's only account, picked by itself
    assert record["priority"] == 1
    assert record["batch_code"] == "B-7"
    assert message["from"] == "Alice Example <alice@example.org>"
    assert message["to"] == ["bob@example.org", '"Doe, Jane" <jane@example.org>']
    assert message["cc"] == ["carol@example.org"]
    assert message["subject"] == "Hello from the CLI"
    assert message["message_id"] == "<hello-1@example.org>"
    assert message["content_type"] == "html"
    assert "<b>HTML</b>" in message["body"]
    [attachment] = message["attachments"]
    assert attachment["filename"] == "doc.pdf"
    assert attachment["fetch_mode"] == "base64"
    assert attachment["mime_type"] == "application/pdf"
    assert base64.b64decode(attachment["storage_path"]) == b"\x00\x01binary\xff"

    # Without a Message-ID the client id is generated, a new one each time.
    bare = write_eml(lab.cli.root / "bare.eml", message_id=None, attachment=None)
    first = lab.json("t-eml", "send", str(bare))["id"]
    second = lab.json("t-eml", "send", str(bare), "--id", "chosen-id")["id"]
    assert first.startswith("eml-")
    assert second == "chosen-id"
    ids = {m["id"] for m in lab.json("t-eml", "messages", "list")}
    assert ids == {"hello-1@example.org", first, "chosen-id"}

    # Two accounts and no terminal: the script must say which.
    lab.run("t-eml", "accounts", "add", "second", "--host", "127.0.0.1", "--port", "9")
    ambiguous = lab.run("t-eml", "send", str(eml), ok=False)
    assert ambiguous.returncode == 2
    assert "missing --account" in ambiguous.stderr

    rejected = lab.run("t-eml", "send", str(eml), "--account", "nope", ok=False)
    assert rejected.returncode == 1
    assert rejected.stderr == (
        "error: HTTP 400: rejected hello-1@example.org: account not found for tenant\n"
    )
    not_mail = lab.cli.root / "junk.eml"
    not_mail.write_text("just some text\n")
    junk = lab.run("t-eml", "send", str(not_mail), "--account", "only", ok=False)
    assert junk.returncode == 1
    assert junk.stderr == f"error: {not_mail}: no From header\n"
    lab.run("tenants", "delete", "t-eml", "--force")


def test_sent_eml_is_delivered_to_the_smtp_server(lab: Lab, smtp: SmtpSink) -> None:
    lab.run("tenants", "add", "t-deliver")
    lab.run(
        "t-deliver", "accounts", "add", "sink", "--host", "127.0.0.1", "--port", str(smtp.port),
        "--no-tls",
    )  # fmt: skip
    eml = write_eml(
        lab.cli.root / "deliver.eml", message_id="<deliver-1@example.org>", subject="Delivered?"
    )
    lab.run("t-deliver", "send", str(eml))
    lab.run("t-deliver", "run-now")

    def sent() -> list[dict[str, object]]:
        return list(lab.json("t-deliver", "messages", "list", "--status", "sent"))

    assert wait_for(sent, seconds=90), lab.json("t-deliver", "messages", "list")
    [envelope] = smtp.received
    assert envelope.mail_from == "alice@example.org"
    assert sorted(envelope.rcpt_tos) == [
        "bob@example.org",
        "carol@example.org",
        "jane@example.org",
    ]
    delivered = message_from_bytes(envelope.content, policy=policy.default)
    assert isinstance(delivered, EmailMessage)
    assert delivered["Subject"] == "Delivered?"
    assert delivered["Message-ID"] == "<deliver-1@example.org>"
    [part] = list(delivered.iter_attachments())
    assert part.get_filename() == "doc.pdf"
    assert part.get_content() == b"%PDF-1.4 not really a pdf"
    lab.run("tenants", "delete", "t-deliver", "--force")


def test_a_bcc_only_eml_with_an_8bit_subject_is_delivered(lab: Lab, smtp: SmtpSink) -> None:
    """RFC 5322 3.6.3: no To is valid (sent as `undisclosed-recipients:;`); a raw UTF-8 Subject
    (RFC 6532) arrives as written, never as U+FFFD; 8-bit bytes that are not UTF-8 are refused."""
    lab.run("tenants", "add", "t-bcc")
    lab.run(
        "t-bcc", "accounts", "add", "sink", "--host", "127.0.0.1", "--port", str(smtp.port),
        "--no-tls",
    )  # fmt: skip
    eml = lab.cli.root / "bcc.eml"
    eml.write_bytes(
        "From: alice@example.org\r\nBcc: hidden@example.org\r\nSubject: Fattura n° 12 €\r\n"
        "Message-ID: <bcc-1@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nciao\r\n".encode()
    )
    lab.run("t-bcc", "send", str(eml))
    lab.run("t-bcc", "run-now")

    def sent() -> list[dict[str, object]]:
        return list(lab.json("t-bcc", "messages", "list", "--status", "sent"))

    assert wait_for(sent, seconds=90), lab.json("t-bcc", "messages", "list")
    [envelope] = smtp.received
    assert envelope.rcpt_tos == ["hidden@example.org"]
    delivered = message_from_bytes(envelope.content, policy=policy.default)
    assert delivered["Subject"] == "Fattura n° 12 €"
    assert delivered["To"] == "undisclosed-recipients:;"
    assert delivered["Bcc"] is None
    assert b"hidden@example.org" not in envelope.content

    latin1 = lab.cli.root / "latin1.eml"
    latin1.write_bytes(b"From: a@example.org\r\nTo: b@example.org\r\nSubject: n\xb0 1\r\n\r\nx\r\n")
    refused = lab.run("t-bcc", "send", str(latin1), ok=False)
    assert refused.returncode == 1
    assert "the Subject header has 8-bit bytes that are not UTF-8" in refused.stderr
    lab.run("tenants", "delete", "t-bcc", "--force")


def test_an_unknown_tenant_is_an_error_not_an_empty_list(lab: Lab) -> None:
    for verb in (("messages", "list"), ("accounts", "list"), ("suppressions", "list")):
        result = lab.run("nosuch", *verb, ok=False)
        assert result.returncode != 0, (verb, result.stdout)
        assert "Tenant 'nosuch' not found" in result.stderr, (verb, result.stderr)
