# SPDX-License-Identifier: Apache-2.0
"""Who currently runs a local instance: one owner per data dir, known to every command.

The owner holds an exclusive `flock` on `<instance dir>/owner.lock` for as long as it runs and
describes itself in `<instance dir>/server.pid` (JSON: pid, command, host, port, started_at).
The kernel drops the lock when the owner exits, however it exits (SIGKILL included), so a stale
pid file can never make a dead process look alive, nor a live one look dead: the lock is the
truth, the file only says who holds it.

`mail-proxy serve`, whether run by hand, by `make run` or by `mail-proxy start`, owns its
instance; so do the short commands that open the embedded Postgres themselves (`migrate`,
`token --regenerate`, `rotate-key`). A second owner is refused with `InstanceInUse`, which
names the running one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from mail_proxy.errors import ConfigError

LOCK_FILE = "owner.lock"
OWNER_FILE = "server.pid"
# A probe (`Owner.of`) holds the lock for microseconds; an owner-to-be retries past it.
_ACQUIRE_ATTEMPTS = 10
_ACQUIRE_PAUSE_SECONDS = 0.05


@dataclass(frozen=True)
class OwnerRecord:
    """What the owner says about itself (`host`/`port` only for a server)."""

    pid: int
    command: str
    host: str | None = None
    port: int | None = None
    started_at: float = 0.0

    @property
    def url(self) -> str | None:
        if self.port is None:
            return None
        # A server bound to every interface is reached on loopback from this machine.
        host = "127.0.0.1" if self.host in (None, "", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def describe(self) -> str:
        where = f" at {self.url}" if self.url else ""
        return f"`mail-proxy {self.command}` (pid {self.pid}){where}"


class InstanceInUse(ConfigError):
    """The data dir is owned by another live process (named in the message)."""

    def __init__(self, folder: Path, owner: OwnerRecord | None) -> None:
        self.owner = owner
        who = owner.describe() if owner else "another process"
        super().__init__(
            f"instance folder {folder} is in use by {who}: stop that one first "
            f"(`mail-proxy stop {folder.name}` for an instance, Ctrl-C for a `serve`)"
        )


def process_alive(pid: int) -> bool:
    """True when `pid` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        # Field 3 of /proc/PID/stat is the state; field 2 (the name) may hold spaces.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _read_record(folder: Path) -> OwnerRecord | None:
    try:
        data = json.loads((folder / OWNER_FILE).read_text())
        return OwnerRecord(
            pid=int(data["pid"]),
            command=str(data.get("command", "serve")),
            host=data.get("host"),
            port=data.get("port"),
            started_at=float(data.get("started_at", 0.0)),
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _try_lock(folder: Path) -> IO[str] | None:
    """The lock file held exclusively, or None when another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a")  # kept open while owned
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def current_owner(folder: Path) -> OwnerRecord | None:
    """The live owner of `folder`, or None (a leftover pid file is then removed).

    An owner that holds the lock but has not written its record yet is reported with pid 0.
    """
    try:
        handle = _try_lock(folder) if folder.is_dir() else None
    except OSError:
        # A folder this user may read but not write (read-only mount, someone else's): asked
        # only who owns it, so `list` and `info` still answer.
        return _owner_read_only(folder)
    if handle is not None:
        with contextlib.closing(handle), contextlib.suppress(OSError):
            (folder / OWNER_FILE).unlink(missing_ok=True)
        return None
    if not folder.is_dir():
        return None
    return _read_record(folder) or OwnerRecord(pid=0, command="(starting)")


def _owner_read_only(folder: Path) -> OwnerRecord | None:
    """`current_owner` without writing: a shared lock on the lock file opened for reading
    conflicts with an owner's exclusive one; no lock file means nobody ever owned it."""
    try:
        handle = open(folder / LOCK_FILE)
    except OSError:
        return None
    with contextlib.closing(handle):
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_record(folder) or OwnerRecord(pid=0, command="(starting)")
        except OSError:
            return None
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


class Ownership:
    """Hold `folder` for this process: `with Ownership(folder, "serve", host=, port=): ...`."""

    def __init__(
        self, folder: Path, command: str, *, host: str | None = None, port: int | None = None
    ) -> None:
        self.folder = folder
        self.record = OwnerRecord(os.getpid(), command, host, port, time.time())
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        for _ in range(_ACQUIRE_ATTEMPTS):
            self._handle = _try_lock(self.folder)
            if self._handle is not None:
                break
            time.sleep(_ACQUIRE_PAUSE_SECONDS)
        else:
            raise InstanceInUse(self.folder, _read_record(self.folder))
        # Written only while holding the lock, so the file always names the holder.
        path = self.folder / OWNER_FILE
        path.write_text(json.dumps(asdict(self.record)) + "\n")

    def release(self) -> None:
        if self._handle is None:
            return
        (self.folder / OWNER_FILE).unlink(missing_ok=True)
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None

    def __enter__(self) -> Ownership:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
