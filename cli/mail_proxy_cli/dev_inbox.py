# SPDX-License-Identifier: Apache-2.0
"""`mail-proxy dev-inbox`: a local SMTP catcher to see mail arrive, without a real mail server.

`run` listens on 127.0.0.1 only (default port 2525; aiosmtpd, no TLS, no authentication) and
keeps every message it is given, byte for byte, in a Maildir (`<home>/dev-inbox/`, home as for
instances), with the SMTP envelope recorded in `X-Envelope-From` / `X-Envelope-To` headers put in
front (so Bcc recipients show). `list` and `show` read that folder; `clear` empties it. Point an
SMTP account at it: host 127.0.0.1, port 2525, no user.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import signal
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import click

from mail_proxy_cli.client import CliError
from mail_proxy_cli.instances import home_dir, port_free, unwritable_message
from mail_proxy_cli.output import Output, epoch
from mail_proxy_cli.session import json_option

DEFAULT_PORT = 2525
HOST = "127.0.0.1"  # a catcher for this machine only: never an open relay on the network
# Larger than the service's own per-message limit (GMP_MESSAGE_MAX_BYTES, 50 MiB).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_dir_option = click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Maildir to keep messages in (default: dev-inbox/ in GMP_HOME or ~/.mail-proxy).",
)


def inbox_dir(folder: Path | None) -> Path:
    return folder if folder is not None else home_dir() / "dev-inbox"


class Catcher:
    """aiosmtpd handler: every accepted message goes into the Maildir as it came."""

    def __init__(self, maildir: mailbox.Maildir) -> None:
        self.maildir = maildir
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        head = (
            f"X-Envelope-From: <{envelope.mail_from}>\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        content = envelope.original_content or envelope.content
        try:
            with self._lock:
                key = self.maildir.add(head + bytes(content))
        except OSError as exc:
            # A temporary failure: the sender keeps the message and retries.
            click.echo(f"cannot store a message: {exc}", err=True)
            return "451 4.3.0 Cannot store the message now"
        click.echo(f"caught {key}: {len(content)} bytes for {', '.join(envelope.rcpt_tos)}")
        return "250 Message accepted for delivery"


@click.group("dev-inbox")
def dev_inbox() -> None:
    """A local SMTP catcher (127.0.0.1:2525) to see mail arrive, and its inbox."""


@dev_inbox.command("run")
@click.option("--port", "-p", type=int, default=DEFAULT_PORT, show_default=True)
@_dir_option
def run(port: int, folder: Path | None) -> None:
    """Catch mail on 127.0.0.1:PORT until Ctrl-C (or SIGTERM)."""
    try:
        from aiosmtpd.controller import Controller
    except ImportError as exc:
        raise CliError(
            "the dev inbox needs aiosmtpd: pip install 'mail-proxy[embedded]' (`make install` "
            "has it)"
        ) from exc
    if not port_free(HOST, port):
        raise CliError(f"port {port} on {HOST} is in use: choose another with --port")
    path = inbox_dir(folder)
    try:
        maildir = _open_maildir(path)
    except OSError as exc:
        hint = "make it writable by this user, or catch into another folder with --dir <dir>"
        raise CliError(unwritable_message(path, exc, what="dev inbox folder", hint=hint)) from exc
    catcher = Catcher(maildir)
    controller = Controller(
        catcher,
        hostname=HOST,
        port=port,
        enable_SMTPUTF8=True,
        data_size_limit=MAX_MESSAGE_BYTES,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    controller.start()
    click.echo(
        f"dev inbox: SMTP on {HOST}:{port}, messages kept in {path}\n"
        f"  an account for it: host {HOST}, port {port}, no user, no TLS\n"
        f"  `mail-proxy dev-inbox list` shows what arrived; Ctrl-C stops"
    )
    try:
        stop.wait()
    finally:
        controller.stop()
    click.echo("dev inbox stopped")


def _open_maildir(path: Path) -> mailbox.Maildir:
    """The Maildir at `path`, with its new/cur/tmp folders (made when missing)."""
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return mailbox.Maildir(path, create=False)


def _parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _messages(path: Path) -> list[tuple[str, float, EmailMessage]]:
    """(key, arrival time, message), oldest first."""
    if not (path / "new").is_dir() and not (path / "cur").is_dir():
        return []
    box = mailbox.Maildir(path, create=False)
    found: list[tuple[str, float, EmailMessage]] = []
    for key in box.keys():
        item = box.get_message(key)
        found.append((key, float(item.get_date()), _parse(box.get_bytes(key))))
    found.sort(key=lambda entry: (entry[1], entry[0]))
    return found


def _summary(number: int, key: str, arrived: float, msg: EmailMessage) -> dict[str, Any]:
    return {
        "number": number,
        "key": key,
        "arrived": epoch(arrived),
        "from": str(msg.get("From", "")),
        "to": str(msg.get("X-Envelope-To", msg.get("To", ""))),
        "subject": str(msg.get("Subject", "")),
    }


@dev_inbox.command("list")
@_dir_option
@json_option
def list_messages(folder: Path | None, as_json: bool) -> None:
    """Messages caught so far, oldest first (their number is what `show` takes)."""
    path = inbox_dir(folder)
    rows = [
        _summary(number, key, arrived, msg)
        for number, (key, arrived, msg) in enumerate(_messages(path), start=1)
    ]
    columns = [
        ("number", "#"),
        ("arrived", "Arrived (UTC)"),
        ("from", "From"),
        ("to", "To"),
        ("subject", "Subject"),
    ]
    empty = f"No mail in {path} yet (`mail-proxy dev-inbox run` catches it)."
    Output(as_json=as_json).table(rows, columns, empty=empty)


def _find(path: Path, which: str) -> tuple[int, str, float, EmailMessage]:
    entries = _messages(path)
    for number, (key, arrived, msg) in enumerate(entries, start=1):
        if which in (str(number), key):
            return number, key, arrived, msg
    raise CliError(f"no message {which!r} in {path} (`mail-proxy dev-inbox list` shows them)")


def _text_of(part: EmailMessage) -> str:
    """A text part decoded; an unknown or lying charset shows replacement marks, not an error."""
    try:
        return str(part.get_content())
    except (LookupError, UnicodeError, ValueError):
        raw = part.get_payload(decode=True)
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _parts(msg: EmailMessage) -> tuple[dict[str, str], list[dict[str, Any]]]:
    bodies: dict[str, str] = {}
    attachments: list[dict[str, Any]] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment" or part.get_filename():
            payload = part.get_payload(decode=True) or b""
            attachments.append(
                {
                    "filename": part.get_filename(),
                    "content_type": part.get_content_type(),
                    "bytes": len(payload),
                }
            )
        elif part.get_content_maintype() == "text":
            bodies.setdefault(part.get_content_subtype(), _text_of(part))
    return bodies, attachments


@dev_inbox.command("show")
@click.argument("which")
@click.option("--raw", is_flag=True, help="Print the message source as received.")
@_dir_option
@json_option
def show(which: str, raw: bool, folder: Path | None, as_json: bool) -> None:
    """Show message WHICH (its number in `list`, or its key): headers, text, attachments."""
    path = inbox_dir(folder)
    number, key, arrived, msg = _find(path, which)
    if raw:
        click.echo(mailbox.Maildir(path, create=False).get_bytes(key).decode("utf-8", "replace"))
        return
    bodies, attachments = _parts(msg)
    record = _summary(number, key, arrived, msg) | {
        "cc": str(msg.get("Cc", "")) or None,
        "reply_to": str(msg.get("Reply-To", "")) or None,
        "message_id": str(msg.get("Message-ID", "")) or None,
        "content_type": msg.get_content_type(),
        "text": bodies.get("plain"),
        "html": bodies.get("html"),
        "attachments": attachments,
        "headers": {name: str(value) for name, value in msg.items()},
    }
    if as_json:
        Output(as_json=True).json(record)
        return
    shown = {k: v for k, v in record.items() if k not in ("headers", "text", "html")}
    shown["attachments"] = [
        f"{a['filename']} ({a['content_type']}, {a['bytes']} B)" for a in attachments
    ]
    Output(as_json=False).fields(shown, title=f"Message {number}")
    for subtype in ("plain", "html"):
        if subtype in bodies:
            click.echo(f"--- text/{subtype} ---\n{bodies[subtype].rstrip()}")


@dev_inbox.command("clear")
@_dir_option
def clear(folder: Path | None) -> None:
    """Delete every caught message."""
    path = inbox_dir(folder)
    entries = _messages(path)
    if entries:
        box = mailbox.Maildir(path, create=False)
        for key, _, _ in entries:
            box.remove(key)
    click.echo(f"Deleted {len(entries)} message(s) from {path}.")
