"""`mail-proxy dev-inbox` and the README's "See a mail arrive" recipe, run as written: a server
started like `make run`, the catcher, then the recipe's commands in bash; the mail must show up
in `dev-inbox list` and `show`."""

from __future__ import annotations

import re
import signal
import smtplib
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.cli.conftest import COMMAND, Cli, wait_for

ROOT = Path(__file__).resolve().parents[3]
_MARKER = "<!-- recipe: run by tests/integration/cli/test_dev_inbox.py"


def recipe_commands() -> list[str]:
    """The README's recipe block: its lines, without `source` (the test's PATH has the venv)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split(_MARKER, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [line.split("  #", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("source ")]


class Background:
    def __init__(self, cli: Cli, *args: str) -> None:
        self.log = cli.root / f"{args[0]}-{free_port()}.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*COMMAND, *args],
                env=cli.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture
def background(cli: Cli) -> Iterator[list[Background]]:
    started: list[Background] = []
    try:
        yield started
    finally:
        for one in started:
            if one.proc.poll() is None:
                one.proc.kill()
                one.proc.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _catcher(cli: Cli, background: list[Background], port: int) -> Background:
    catcher = Background(cli, "dev-inbox", "run", "--port", str(port))
    background.append(catcher)
    assert wait_for(lambda: f"SMTP on 127.0.0.1:{port}" in catcher.log.read_text(), seconds=60)
    return catcher


@pytest.mark.timeout(400)
def test_the_readme_recipe_delivers_a_mail_into_the_dev_inbox(
    cli: Cli, background: list[Background], tmp_path: Path
) -> None:
    api_port, smtp_port = free_port(), free_port()
    server = Background(cli, "serve", "--port", str(api_port))  # what `make run` runs
    background.append(server)
    _catcher(cli, background, smtp_port)
    assert wait_for(lambda: _answers(f"http://127.0.0.1:{api_port}"), seconds=240)

    commands = recipe_commands()
    assert any(c.startswith("mail-proxy default acme send") for c in commands)
    setup = [c for c in commands if not c.startswith("mail-proxy dev-inbox")]
    script = "set -e\n" + "\n".join(c.replace("2525", str(smtp_port)) for c in setup)
    venv_bin = str(Path(COMMAND[0]).parent)
    env = cli.env(PATH=f"{venv_bin}:{cli.env()['PATH']}")
    ran = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr

    listed = wait_for(lambda: cli.json("dev-inbox", "list"), seconds=60)
    assert listed, cli.run("default", "acme", "messages", "list").stdout
    [mail] = listed
    assert mail["subject"] == "Hello"
    assert mail["to"] == "you@example.org"
    shown = cli.run("dev-inbox", "show", "1").stdout
    assert "It works." in shown
    as_json = cli.json("dev-inbox", "show", "1")
    assert as_json["text"].strip() == "It works."
    assert as_json["headers"]["X-Genro-Mail-ID"]
    assert server.stop() == 0


@pytest.mark.timeout(400)  # a dozen CLI processes; slow on a loaded machine
def test_catcher_keeps_bytes_envelope_and_parts(
    cli: Cli, background: list[Background], tmp_path: Path
) -> None:
    port = free_port()
    catcher = _catcher(cli, background, port)
    msg = EmailMessage()
    msg["From"] = "Zoë <zoe@example.org>"
    msg["To"] = "ann@example.org"
    msg["Subject"] = "Ünïcode and parts"
    msg.set_content("plain ☃")
    msg.add_alternative("<p>html ☃</p>", subtype="html")
    msg.add_attachment(b"\x00\x01" * 100, maintype="application", subtype="pdf", filename="a.pdf")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.send_message(msg, to_addrs=["ann@example.org", "hidden@example.org"])

    [row] = cli.json("dev-inbox", "list")
    assert row["subject"] == "Ünïcode and parts"
    assert row["to"] == "ann@example.org, hidden@example.org"  # the envelope: Bcc shows
    shown = cli.json("dev-inbox", "show", row["key"])
    assert shown["text"].strip() == "plain ☃"
    assert shown["html"].strip() == "<p>html ☃</p>"
    assert shown["attachments"] == [
        {"filename": "a.pdf", "content_type": "application/pdf", "bytes": 200}
    ]
    raw = cli.run("dev-inbox", "show", "1", "--raw").stdout
    assert raw.startswith("X-Envelope-From: <zoe@example.org>")

    # A sender's odd bytes (an unknown charset, 8-bit junk) are shown, never a traceback.
    odd = (
        b"From: x@example.org\r\nTo: ann@example.org\r\nSubject: odd\r\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9 \xff\r\n"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.sendmail("x@example.org", ["ann@example.org"], odd)
    assert "caf" in cli.json("dev-inbox", "show", "2")["text"]

    missing = cli.run("dev-inbox", "show", "7", ok=False)
    assert missing.returncode == 1
    assert "no message '7'" in missing.stderr

    # Only loopback, and a busy port is a clear error, not a traceback.
    busy = cli.run("dev-inbox", "run", "--port", str(port), ok=False)
    assert busy.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in busy.stderr
    assert catcher.stop() == 0
    assert re.search(r"Deleted 2 message", cli.run("dev-inbox", "clear").stdout)
    assert cli.json("dev-inbox", "list") == []
