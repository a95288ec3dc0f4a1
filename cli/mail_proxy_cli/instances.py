# SPDX-License-Identifier: Apache-2.0
"""Local instances on disk and their server processes.

An instance is a folder `<home>/<name>/` (home: `GMP_HOME`, default `~/.mail-proxy`) holding
`instance.json` (name, host, port), the embedded Postgres in `pgdata/`, `admin_token`,
`encryption_key`, `server.log` and, while it runs, the owner lock and record
(`mail_proxy.instance_owner`). Every `mail-proxy serve` on the folder registers there, whoever
started it (`make run`, by hand, `start`), so `list`, `stop` and `NAME ...` see one registry and
a second server on the same data is refused; a `serve --data-dir` outside the home is entered in
it as a symbolic link `<home>/<name>` to its folder. `start` runs `mail-proxy serve` detached in
its own session, so it outlives the shell that started it; `stop` sends SIGTERM (the server drains
and stops its Postgres), waits, then kills, then stops a Postgres a killed server left behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from mail_proxy.admin_token import read_local_token
from mail_proxy.embedded import stop_postgres
from mail_proxy.instance_owner import (
    InstanceInUse,
    OwnerRecord,
    Ownership,
    current_owner,
    process_alive,
)

HOME_ENV = "GMP_HOME"
CONFIG_FILE = "instance.json"
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


# What a folder that cannot be written answers (read-only, not ours, not a folder, full).
UNWRITABLE_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOTDIR,
        errno.EEXIST,
        errno.ENOSPC,
        errno.EDQUOT,
    }
)
FOLDER_HINT = (
    "make it writable by this user (chown/chmod, or a read-write mount), "
    "or use another folder: GMP_HOME=<dir>, or `mail-proxy serve --data-dir <dir>`"
)


def unwritable_message(
    path: Path | str, exc: OSError, *, what: str = "instance folder", hint: str = FOLDER_HINT
) -> str:
    """One line naming the folder, why it cannot be written, and what to do."""
    reason = exc.strerror or str(exc)
    return f"cannot write the {what} {path} ({reason}): {hint}"


def require_writable(folder: Path) -> None:
    """Refuse at once, in one line, a folder the command would write into but cannot: created
    when missing, then a file made and removed in it (the permission bits alone do not tell,
    e.g. for root or on a read-only mount). Raises `InstanceError`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InstanceError(unwritable_message(folder, exc)) from exc


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
        save_config(self.folder, self)


def save_config(folder: Path, instance: Instance) -> None:
    """Write `instance.json` in `folder` (a `serve` on a `--data-dir` records itself too)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(asdict(instance), indent=2) + "\n")


def register_external(folder: Path, reserved: frozenset[str] = frozenset()) -> str | None:
    """Enter a data dir outside the home in the registry (`list`, `NAME ...`, `stop`) as the
    link `<home>/<folder name>` (suffixed with a hash of its path when that name is taken);
    the name it is listed under, None for a folder already in the home. A command name
    (`reserved`) is never used alone (`mail-proxy list ...` would be ambiguous). Raises OSError
    when the home cannot be written."""
    home = home_dir()
    if folder.parent.resolve() == home.resolve():
        return None
    target = folder.resolve()
    base = folder.name if NAME_PATTERN.match(folder.name) else "instance"
    digest = hashlib.sha256(str(target).encode()).hexdigest()[:8]
    names = [f"{base[:54]}-{digest}"] if base in reserved else [base, f"{base[:54]}-{digest}"]
    for name in names:
        link = home / name
        if link.is_symlink() and link.resolve() == target:
            return name
        if link.is_symlink() and not link.exists():
            link.unlink()  # a link to a folder deleted since: the name is free again
        if not link.exists() and not link.is_symlink():
            home.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target, target_is_directory=True)
            return name
    raise FileExistsError(errno.EEXIST, "both registry names are taken", str(home / base))


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
    """The saved instance (where its running server listens, if one does), or a fresh unsaved
    one when the folder has no config yet."""
    path = home_dir() / name / CONFIG_FILE
    instance = Instance(name=name)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        data = json.loads(path.read_text())
        instance.host, instance.port = data.get("host", "127.0.0.1"), data.get("port")
    running = current_owner(instance.folder)
    if running is not None and running.command == "serve" and running.port is not None:
        # Where it really listens wins over the saved config (e.g. `serve --port` by hand).
        instance.host, instance.port = running.host or instance.host, running.port
    return instance


def all_instances() -> list[Instance]:
    home = home_dir()
    if not home.is_dir():
        return []
    names = sorted(p.name for p in home.iterdir() if p.is_dir() and exists(p.name))
    return [load(name) for name in names]


def owner(instance: Instance) -> OwnerRecord | None:
    """Whoever runs the instance now (a server or a command holding its Postgres), or None."""
    return current_owner(instance.folder)


def running_pid(instance: Instance) -> int | None:
    """The pid of the instance's server (`mail-proxy serve`, however started) when it runs."""
    found = owner(instance)
    if found is None or found.command != "serve" or found.pid <= 0:
        return None
    return found.pid


@contextlib.contextmanager
def locked(instance: Instance) -> Iterator[None]:
    """Serialise start/stop of one instance between concurrent `mail-proxy` commands; an
    unwritable folder is refused first (`InstanceError`, one line)."""
    require_writable(instance.folder)
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
    # The server records itself in the folder once it owns it (mail_proxy.instance_owner).
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


def _stop_orphan_postgres(instance: Instance, timeout_seconds: float) -> bool:
    """Stop a Postgres left behind by a killed owner; True when there was one.

    Only when nobody owns the instance: a live owner (a server, `migrate`, ...) still uses it.
    """
    try:
        with Ownership(instance.folder, "stop"):
            return stop_postgres(instance.pgdata, timeout_seconds=timeout_seconds)
    except InstanceInUse:
        return False


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
        # `pid` holds the instance lock right now (kernel-checked), so it is the server, not a
        # process that reused a number from an old pid file.
        os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
        killed = force
        if not _wait_gone(pid, timeout_seconds):
            os.kill(pid, signal.SIGKILL)
            killed = True
            _wait_gone(pid, timeout_seconds)
    orphan = _stop_orphan_postgres(instance, timeout_seconds)
    return StopResult(pid is not None, killed, orphan)
