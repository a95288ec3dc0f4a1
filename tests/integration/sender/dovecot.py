"""A real IMAP server for the tests: Dovecot (Debian's `dovecot-imapd`), on 127.0.0.1.

`dovecot_server()` writes a config, a passwd-file with test users and a TLS certificate
(trustme) into a temp dir, starts `dovecot -F` on free ports (plain IMAP with STARTTLS, and
IMAPS), and stops it afterwards. Running as root (CI here), mail is stored as the `dovecot`
user; as anyone else, as that user. `.ci/run` installs the package when it is missing.
Mail goes in with IMAP APPEND (`Dovecot.append`), as a real MTA's delivery would leave it.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
PASSWORD = "secret-pw"


@dataclass
class Dovecot:
    host: str
    port: int  # plain, STARTTLS offered
    ssl_port: int  # implicit TLS
    ca_file: Path
    root: Path

    def _connect(self, user: str) -> imaplib.IMAP4:
        imap = imaplib.IMAP4(self.host, self.port, timeout=10)
        imap.login(user, PASSWORD)
        return imap

    def append(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        imap = self._connect(user)
        try:
            typ, _ = imap.append(f'"{folder}"', "", imaplib.Time2Internaldate(time.time()), raw)
            assert typ == "OK"
        finally:
            imap.logout()

    def create_folder(self, user: str, folder: str) -> None:
        imap = self._connect(user)
        try:
            imap.create(f'"{folder}"')
        finally:
            imap.logout()

    def messages(self, user: str, folder: str = "INBOX") -> list[tuple[int, str]]:
        """(uid, flags) of every message in the folder."""
        imap = self._connect(user)
        try:
            typ, _ = imap.select(f'"{folder}"', readonly=True)
            assert typ == "OK"
            typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
            out = []
            for item in data:
                if not item:
                    continue
                text = item.decode() if isinstance(item, bytes) else str(item)
                uid = int(text.split("UID ")[1].split()[0].rstrip(")"))
                out.append((uid, text.split("FLAGS (")[1].split(")")[0]))
            return out
        finally:
            imap.logout()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"dovecot exited ({proc.returncode}): {text[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError("dovecot did not start listening")


def _config(root: Path, port: int, ssl_port: int, user: str, group: str) -> str:
    return f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={user} gid={group} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {ssl_port}
    ssl = yes
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
service stats {{
  inet_listener http {{
    port = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""


@contextlib.contextmanager
def dovecot_server(users: list[str]) -> Iterator[Dovecot]:
    if not Path(DOVECOT).exists():
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd; .ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="mp-dovecot-"))
    if os.geteuid() == 0:
        user, group = "dovecot", "dovecot"
    else:
        user = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
    uid, gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(root / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    (root / "passwd").write_text("".join(f"{u}:{{PLAIN}}{PASSWORD}::::::\n" for u in users))
    for sub in ("run", "state", "mail", "home"):
        (root / sub).mkdir()
    for path in [root, *root.iterdir()]:
        os.chown(path, uid, gid) if os.geteuid() == 0 else None
    os.chmod(root, 0o755)
    port, ssl_port = _free_port(), _free_port()
    conf = root / "dovecot.conf"
    conf.write_text(_config(root, port, ssl_port, user, group))
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _wait_listening(port, proc, root / "dovecot.log")
        _wait_listening(ssl_port, proc, root / "dovecot.log")
        yield Dovecot("127.0.0.1", port, ssl_port, root / "ca.pem", root)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(root, ignore_errors=True)


def tls_context(server: Dovecot) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_file))
