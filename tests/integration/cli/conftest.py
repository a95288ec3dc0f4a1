"""The `mail-proxy` command driven as a user drives it: real processes, a home folder in tmp.

`Cli` runs the installed command in a subprocess with `HOME` and `GMP_HOME` pointing into a
temporary folder (so `~/.mail-proxy` is never the real one) and no `GMP_*` variable from the
outer environment. `lab` is one running instance shared by the admin-verb tests (each test uses
its own tenants); it is stopped at the end of the session.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pexpect
import pytest
from aiosmtpd.controller import Controller

from tests.conftest import free_port, interrupt_on_sigterm

_SCRIPT = Path(sys.executable).with_name("mail-proxy")
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "mail_proxy_cli.main"]


@dataclass
class Cli:
    root: Path

    @property
    def home(self) -> Path:
        """What `GMP_HOME` points at: the folder of instances."""
        return self.root / "mail-proxy-home"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GMP_")}
        env.pop("MAIL_PROXY_ENCRYPTION_KEY", None)
        env |= {"HOME": str(self.root), "GMP_HOME": str(self.home), **extra}
        return env

    def run(
        self, *args: str, ok: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `mail-proxy ARGS` with no terminal on stdin, as a script would."""
        result = subprocess.run(
            [*COMMAND, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env or self.env(),
            timeout=100,
        )
        if ok:
            assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.run(*args, "--json", env=env).stdout)

    def spawn(self, *args: str) -> pexpect.spawn:
        """`mail-proxy ARGS` on a pseudo-terminal, for the interactive prompts."""
        child = pexpect.spawn(
            COMMAND[0], [*COMMAND[1:], *args], env=self.env(), encoding="utf-8", timeout=60
        )
        child.logfile_read = _Transcript()
        return child

    def pid_of(self, name: str) -> int:
        pid: int = json.loads((self.home / name / "server.pid").read_text())["pid"]
        return pid


class _Transcript(list[str]):
    """Everything a pseudo-terminal showed, to check that secrets were not echoed."""

    def write(self, text: str) -> None:
        self.append(text)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return "".join(self)


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention `text` (zombies excluded)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if text in cmdline and state != "Z":
                found.append(cmdline)
    return found


@contextlib.contextmanager
def _private_root(prefix: str) -> Iterator[Path]:
    """A folder outside pytest's temporary root, removed at the end. An instance's embedded
    Postgres runs as the `pgserver` user when the tests run as root, and a pytest session
    started meanwhile on the same machine makes pytest's root private to root again (0700):
    that Postgres could then no longer reach its own data directory (PANIC, the instance
    answers 503 from then on)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cli() -> Iterator[Cli]:
    """A fresh home; any instance a test left running is stopped afterwards."""
    with _private_root("mp-cli-") as root, interrupt_on_sigterm():
        runner = Cli(root)
        try:
            yield runner
        finally:
            _stop_all(runner)


def _stop_all(runner: Cli) -> None:
    if runner.home.is_dir():
        for folder in runner.home.iterdir():
            if (folder / "instance.json").exists():
                runner.run("stop", folder.name, ok=False)


@dataclass
class Lab:
    """The shared running instance."""

    cli: Cli
    name: str
    url: str
    admin_token: str

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cli.run(self.name, *args, ok=ok)

    def json(self, *args: str) -> Any:
        return self.cli.json(self.name, *args)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    port = free_port()
    with _private_root("mp-cli-lab-") as root, interrupt_on_sigterm():
        runner = Cli(root)
        try:
            runner.run("start", "lab", "--port", str(port))
            token = runner.json("lab", "token")["token"]
            yield Lab(runner, "lab", f"http://127.0.0.1:{port}", token)
        finally:
            _stop_all(runner)


@dataclass
class SmtpSink:
    """A real SMTP server on 127.0.0.1 that keeps what it receives."""

    port: int
    received: list[Any] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope)
        self.arrived.set()
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def write_eml(
    path: Path,
    *,
    message_id: str | None = "<hello-1@example.org>",
    subject: str = "Hello from the CLI",
    attachment: bytes | None = b"%PDF-1.4 not really a pdf",
) -> Path:
    """An .eml as a mail client saves it: text and HTML alternatives, optionally a PDF."""
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.org>"
    msg["To"] = 'bob@example.org, "Doe, Jane" <jane@example.org>'
    msg["Cc"] = "carol@example.org"
    msg["Subject"] = subject
    if message_id:
        msg["Message-ID"] = message_id
    msg.set_content("Hello in plain text.")
    msg.add_alternative("<p>Hello in <b>HTML</b>.</p>", subtype="html")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="doc.pdf")
    path.write_bytes(bytes(msg))
    return path


def wait_for(predicate: Any, *, seconds: float = 60.0) -> Any:
    """Poll until `predicate()` is truthy and return it; None when the deadline passes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    return None
