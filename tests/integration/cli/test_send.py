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
