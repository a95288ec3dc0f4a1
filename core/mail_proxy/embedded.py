# SPDX-License-Identifier: Apache-2.0
"""The embedded Postgres of the laptop mode, from the `pgserver` wheel.

Started in `<instance dir>/pgdata` and stopped when the last process using it stops; the rest of
the service sees a DSN like any external Postgres.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from mail_proxy.errors import ConfigError

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A running embedded server; `stop()` (or leaving the `with` block) shuts it down."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir / "pgdata"
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
        self.pgdata.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = pgserver.get_server  # type: ignore[attr-defined]
            self._server = start(self.pgdata, cleanup_mode="stop")
        dsn: str = self._server.get_uri()
        log.info("embedded postgres started", extra={"action": "embedded_start"})
        return dsn

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
