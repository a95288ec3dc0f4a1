# SPDX-License-Identifier: Apache-2.0
"""Local instances on disk and their server processes.

An instance is a folder `<home>/<name>/` (home: `GMP_HOME`, default `~/.mail-proxy`) holding
`instance.json` (name, host, port), the embedded Postgres in `pgdata/`, `admin_token`,
`encryption_key`, `server.log` and, while it runs, `server.pid`. `start` runs
`mail-proxy serve` detached in its own session, so it outlives the shell that started it;
`stop` sends SIGTERM (the server drains and stops its Postgres), waits, then kills.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from mail_proxy.admin_token import read_local_token

HOME_ENV = "GMP_HOME"
CONFIG_FILE = "instance.json"
PID_FILE = "server.pid"
LOG_FILE = "server.log"
FIRST_PORT = 8000
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

# A local instance is self-contained: what these say about some other deployment must not leak
# into the server `start` spawns (it would point it at another database, token or key).
_NOT_INHERITED = (
    "GMP_DATABASE_URL",
    "GMP_API_TOKEN",
    "GMP_URL",
    "GMP_HOST",
    "GMP_PORT",
    "GMP_DATA_DIR",
    "GMP_INSTANCE_NAME",
    "MAIL_PROXY_ENCRYPTION_KEY",
)


class InstanceError(Exception):
    """Something about a local instance the user has to fix (message meant for them)."""


def home_dir() -> Path:
    """Where instances live: `GMP_HOME`, else `~/.mail-proxy` (read at call time)."""
    configured = os.environ.get(HOME_ENV)
    return Path(configured).expanduser() if configured else Path("~/.mail-proxy").expanduser()


@dataclass
class Instance:
    name: str
    host: str = "127.0.0.1"
    port: int | None = None

    @property
    def folder(self) -> Path:
        return home_dir() / self.name

    @property
    def url(self) -> str:
        # A server bound to every interface is reached on loopback from this machine.
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def pgdata(self) -> Path:
        return self.folder / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.folder / LOG_FILE

    def admin_token(self) -> str | None:
        return read_local_token(self.folder)

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / CONFIG_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")


@dataclass
class PidInfo:
    pid: int
    port: int
    host: str
    started_at: float


def check_name(name: str, reserved: set[str]) -> None:
    if not NAME_PATTERN.match(name):
        raise InstanceError(
            f"invalid instance name {name!r}: use letters, digits, '.', '_' or '-' "
            "(up to 63, starting with a letter or digit)"
        )
    if name in reserved:
        raise InstanceError(
            f"{name!r} is a mail-proxy command, so it cannot name an instance "
            "(`mail-proxy NAME ...` would be ambiguous); pick another name"
        )


def exists(name: str) -> bool:
    folder = home_dir() / name
    return (folder / CONFIG_FILE).exists() or (folder / "pgdata").exists()


def load(name: str) -> Instance:
    """The saved instance, or a fresh unsaved one when the folder has no config yet."""
    path = home_dir() / name / CONFIG_FILE
    if not path.exists():
        return Instance(name=name)
    data = json.loads(path.read_text())
    return Instance(name=name, host=data.get("host", "127.0.0.1"), port=data.get("port"))


def all_instances() -> list[Instance]:
    home = home_dir()
    if not home.is_dir():
        return []
    names = sorted(p.name for p in home.iterdir() if p.is_dir() and exists(p.name))
    return [load(name) for name in names]


def process_alive(pid: int) -> bool:
    """True when `pid` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        # Field 3 is the state; the command name in field 2 may hold spaces, so split after ')'.
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _serves(pid: int, folder: Path) -> bool:
    """Whether `pid` is still this instance's server, not a process that reused the number."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return process_alive(pid)  # no /proc (macOS): trust the pid file
    return b"serve" in args and str(folder).encode() in args


def read_pid(instance: Instance) -> PidInfo | None:
    path = instance.folder / PID_FILE
    try:
        return PidInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def running_pid(instance: Instance) -> int | None:
    """The server's pid when it runs; a stale pid file is removed."""
    info = read_pid(instance)
    if info is None:
        return None
    if process_alive(info.pid) and _serves(info.pid, instance.folder):
        return info.pid
    (instance.folder / PID_FILE).unlink(missing_ok=True)
    return None


@contextlib.contextmanager
def locked(instance: Instance) -> Iterator[None]:
    """Serialise start/stop of one instance between concurrent `mail-proxy` commands."""
    instance.folder.mkdir(parents=True, exist_ok=True)
    with open(instance.folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(instance: Instance) -> int:
    """The first port from 8000 that no other instance claims and nothing listens on."""
    claimed = {i.port for i in all_instances() if i.name != instance.name}
    port = FIRST_PORT
    while port in claimed or not port_free(instance.host, port):
        port += 1
    return port


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}


def spawn(instance: Instance) -> subprocess.Popen[bytes]:
    """Start `mail-proxy serve` for the instance, detached, logging to `server.log`."""
    assert instance.port is not None
    command = [
        sys.executable,
        "-m",
        "mail_proxy_cli.main",
        "serve",
        "--data-dir",
        str(instance.folder),
        "--host",
        instance.host,
        "--port",
        str(instance.port),
        "--instance",
        instance.name,
    ]
    # The log holds the generated admin token on first start: owner-only, like the token file.
    fd = os.open(instance.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=instance.folder,
            env=_child_env(),
            start_new_session=True,  # its own session: no SIGHUP when the shell goes away
        )
    info = PidInfo(process.pid, instance.port, instance.host, time.time())
    (instance.folder / PID_FILE).write_text(json.dumps(asdict(info)) + "\n")
    return process


def wait_healthy(
    instance: Instance, process: subprocess.Popen[bytes], *, timeout_seconds: float
) -> bool:
    """True once `/health` answers; False when the server exits or the time runs out."""
    deadline = time.monotonic() + timeout_seconds
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{instance.url}/health").status_code == 200:
                    return True
            time.sleep(0.2)
    return False


def log_tail(instance: Instance, lines: int = 15) -> str:
    try:
        text = instance.log_file.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_gone(pid: int, timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.1)
    return not process_alive(pid)


def postmaster_pid(instance: Instance) -> int | None:
    """The embedded Postgres's pid when it runs (first line of `postmaster.pid`)."""
    try:
        first = (instance.pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
        pid = int(first)
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) else None


def prune_postgres_users(instance: Instance) -> list[int]:
    """Drop dead processes from pgserver's list of Postgres users; returns the live ones.

    pgserver stops Postgres when its last user process exits cleanly and remembers users in
    `.handle_pids.json`; a killed server stays listed forever, and then the next clean exit
    would leave Postgres running.
    """
    handles = instance.pgdata / ".handle_pids.json"
    try:
        users = [int(p) for p in json.loads(handles.read_text())]
    except (OSError, ValueError, TypeError):
        return []
    live = [p for p in users if process_alive(p)]
    if live != users:
        handles.write_text(json.dumps(live))
    return live


def _stop_orphan_postgres(instance: Instance, timeout_seconds: float) -> bool:
    """Stop a Postgres left behind by a killed server (no live user); True when one was."""
    if prune_postgres_users(instance):
        return False  # another process (e.g. `mail-proxy token`) still uses this Postgres
    pid = postmaster_pid(instance)
    if pid is None:
        return False
    os.kill(pid, signal.SIGINT)  # Postgres "fast" shutdown
    if not _wait_gone(pid, timeout_seconds):
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, timeout_seconds)
    return True


@dataclass
class StopResult:
    was_running: bool
    killed: bool  # needed SIGKILL
    orphan_postgres_stopped: bool


def stop(instance: Instance, *, timeout_seconds: float, force: bool = False) -> StopResult:
    """SIGTERM (SIGKILL with `force`), wait, SIGKILL fallback; never leaves Postgres behind."""
    pid = running_pid(instance)
    killed = False
    if pid is not None:
        os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
        killed = force
        if not _wait_gone(pid, timeout_seconds):
            os.kill(pid, signal.SIGKILL)
            killed = True
            _wait_gone(pid, timeout_seconds)
    (instance.folder / PID_FILE).unlink(missing_ok=True)
    orphan = _stop_orphan_postgres(instance, timeout_seconds)
    return StopResult(pid is not None, killed, orphan)
