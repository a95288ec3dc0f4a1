"""A relay in front of the test Postgres that a test can cut (an outage) or freeze (a hung
server), without touching the shared server."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest


class SocketProxy:
    """A Unix-socket relay in front of Postgres that a test can cut and restore (an outage
    without stopping the shared server): cutting closes every relayed connection. Holding the
    replies lets a statement run on the server while its answer is still on the way (a client
    cancelled after Postgres did the work)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.directory = Path(tempfile.mkdtemp(prefix="mp-pgproxy-"))
        self.path = self.directory / ".s.PGSQL.5432"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._replying = asyncio.Event()
        self._replying.set()

    def freeze(self) -> None:
        """Postgres hangs: connections stay open, nothing more goes through either way."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def hold_replies(self) -> None:
        """Statements still reach Postgres and run; what it answers waits in the relay."""
        self._replying.clear()

    def release_replies(self) -> None:
        self._replying.set()

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._relay, path=str(self.path))

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, *gates: asyncio.Event
        ) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    for gate in (self._flowing, *gates):
                        await gate.wait()
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer, self._replying))
        self._writers.discard(writer)
        self._writers.discard(up_writer)

    def dsn(self, dsn: str) -> str:
        """`dsn` going through this relay."""
        parts = urlsplit(dsn)
        query = dict(parse_qsl(parts.query))
        query.update(host=str(self.directory), port="5432")
        return urlunsplit(parts._replace(query=urlencode(query)))


def _socket_of(dsn: str) -> str:
    query = dict(parse_qsl(urlsplit(dsn).query))
    directory = Path(query["host"])
    port = query.get("port")
    if port:
        return str(directory / f".s.PGSQL.{port}")
    (found,) = directory.glob(".s.PGSQL.*[0-9]")
    return str(found)


@pytest.fixture
async def proxy(dsn: str) -> AsyncIterator[SocketProxy]:
    relay = SocketProxy(_socket_of(dsn))
    try:
        yield relay
    finally:
        await relay.cut()
        relay.directory.rmdir()
