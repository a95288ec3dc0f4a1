# SPDX-License-Identifier: Apache-2.0
"""The embedded Postgres of the laptop mode, from the `pgserver` wheel.

Run in `<instance dir>/pgdata` by whoever currently owns the instance (`instance_owner`): the
owner adopts a Postgres a killed predecessor left running, and stops it when it leaves. Ownership
is found by data dir through a kernel lock, never through a pid file a dead process left behind
(pgserver's own list of users, `.handle_pids.json`, keeps dead pids forever and then never stops
the server). The rest of the service sees a DSN like any external Postgres.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

from mail_proxy.errors import ConfigError
from mail_proxy.instance_owner import Ownership, process_alive

log = logging.getLogger(__name__)

_HANDLES = ".handle_pids.json"


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid of the Postgres running on `pgdata` (first line of `postmaster.pid`), if alive."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) else None


def _forget_other_users(pgdata: Path) -> None:
    """Only the owner uses this Postgres: every pid pgserver remembers is a leftover."""
    if (pgdata / _HANDLES).exists():
        (pgdata / _HANDLES).write_text(json.dumps([]))


def stop_postgres(pgdata: Path, *, timeout_seconds: float = 30.0) -> bool:
    """Stop the Postgres on `pgdata` (fast shutdown, then SIGKILL); True when one was running.

    Call it only while owning the instance: nobody else may be using that server.
    """
    pid = postmaster_pid(pgdata)
    if pid is None:
        return False
    os.kill(pid, signal.SIGINT)  # Postgres "fast" shutdown: rolls back, closes, stops
    deadline = time.monotonic() + timeout_seconds
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if process_alive(pid):
        os.kill(pid, signal.SIGKILL)
    _forget_other_users(pgdata)
    return True


class EmbeddedPostgres:
    """A running embedded server owned by this process; `stop()` (or leaving the `with` block)
    shuts it down and gives the instance up.

    Raises `InstanceInUse` (naming the owner) when another live process owns the instance, and
    `ConfigError` when pgserver is not installed.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        command: str = "serve",
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.pgdata = data_dir / "pgdata"
        self.ownership = Ownership(data_dir, command, host=host, port=port)
        self._server: Any = None

    def start(self) -> str:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR notice
                import pgserver
        except ImportError as exc:
            raise ConfigError(
                "GMP_DATABASE_URL is not set and the embedded Postgres is not installed: "
                "pip install 'mail-proxy[embedded]' or point GMP_DATABASE_URL at a server"
            ) from exc
        self.ownership.acquire()
        try:
            self.pgdata.mkdir(parents=True, exist_ok=True)
            adopted = postmaster_pid(self.pgdata)
            _forget_other_users(self.pgdata)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = pgserver.get_server  # type: ignore[attr-defined]
                self._server = start(self.pgdata, cleanup_mode="stop")
            dsn: str = self._server.get_uri()
        except BaseException:
            self.ownership.release()
            raise
        log.info(
            "embedded postgres started",
            extra={"action": "embedded_start", "adopted_pid": adopted},
        )
        return dsn

    def stop(self) -> None:
        try:
            if self._server is not None:
                self._server.cleanup()
                self._server = None
                # pgserver stops the server only when it believes this process was its last
                # user; as the owner we know it was, whatever its list says.
                stop_postgres(self.pgdata)
        finally:
            self.ownership.release()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
