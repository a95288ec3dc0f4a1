"""An embedded Postgres of a test's own, which the test can stop and start again (outages)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import stopped_on_sigterm


class StoppablePostgres:
    """An embedded Postgres of the test's own that can be stopped and started again."""

    def __init__(self, root: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
            from pgserver._commands import pg_ctl

        self._pg_ctl = pg_ctl
        self.server: Any = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
        self.dsn: str = self.server.get_uri()

    def stop(self) -> None:
        self._pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def start(self) -> None:
        with self.server._lock:
            self.server.ensure_postgres_running()
        assert self.server.get_uri() == self.dsn  # same socket: clients reconnect as they were

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.server.cleanup()


@pytest.fixture
def stoppable_pg() -> Iterator[StoppablePostgres]:
    root = Path(tempfile.mkdtemp(prefix="mp-pg-outage-"))
    pg = StoppablePostgres(root)

    def stop() -> None:
        pg.cleanup()
        shutil.rmtree(root, ignore_errors=True)

    try:
        with stopped_on_sigterm(stop):
            yield pg
    finally:
        stop()
