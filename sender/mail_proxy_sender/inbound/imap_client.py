# SPDX-License-Identifier: BUSL-1.1
"""The IMAP client the pollers use: the only module that imports aioimaplib.

    async with ImapSession.open(target) as imap:       # connect, (STARTTLS), LOGIN, SELECT
        imap.uidvalidity                                # from the SELECT answer
        for uid in await imap.uids_after(last_uid): ...  # UID SEARCH UID n+1:*
        raw = await imap.fetch(uid)                     # UID FETCH uid (BODY.PEEK[])
        await imap.mark_seen(uid) / await imap.move(uid, folder)

Security modes: `ssl` (implicit TLS, IMAPS), `starttls` (RFC 3501 STARTTLS on the plain port,
refused when the server does not offer it) and `plain`. Certificates are verified against the
system store or `ca_file`. Every command has a timeout; failures raise `ImapError` (the cause
chained), never a library exception, and the password never appears in a log or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aioimaplib

Security = Literal["ssl", "starttls", "plain"]
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCH_UID = re.compile(rb"UID (\d+)")


class ImapError(Exception):
    """The mailbox could not be read (connection, TLS, login, folder, protocol)."""


@dataclass(frozen=True)
class ImapTarget:
    host: str
    port: int
    user: str
    password: str
    folder: str = "INBOX"
    security: Security = "ssl"
    timeout_seconds: float = 30.0
    ca_file: Path | None = None

    def __repr__(self) -> str:  # never the password
        return f"ImapTarget({self.security}://{self.user}@{self.host}:{self.port}/{self.folder})"


def _tls_context(target: ImapTarget) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if target.ca_file is not None:
        context.load_verify_locations(cafile=str(target.ca_file))
    return context


def _quoted(value: str) -> str:
    """An IMAP quoted string (RFC 3501 section 4.3): the folder name may hold spaces."""
    if any(ch in value for ch in "\r\n\0"):
        raise ImapError("line break in folder name")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(response: Any, what: str) -> Any:
    if response.result != "OK":
        text = b" ".join(line for line in response.lines if isinstance(line, bytes))
        raise ImapError(f"{what} refused: {text.decode('utf-8', 'replace')[:200]}")
    return response


class ImapSession:
    def __init__(self, client: Any, target: ImapTarget) -> None:
        self._client = client
        self._target = target
        self.uidvalidity = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, target: ImapTarget) -> AsyncIterator[ImapSession]:
        timeout = target.timeout_seconds
        client: Any = None
        try:
            if target.security == "ssl":
                client = aioimaplib.IMAP4_SSL(
                    target.host, target.port, timeout=timeout, ssl_context=_tls_context(target)
                )
            else:
                client = aioimaplib.IMAP4(target.host, target.port, timeout=timeout)
            await client.wait_hello_from_server()
            session = cls(client, target)
            if target.security == "starttls":
                await session._starttls()
            _check(await client.login(target.user, target.password), "LOGIN")
            await session._select()
        except (OSError, TimeoutError, ssl.SSLError, aioimaplib.AioImapException) as exc:
            await _close(client)
            raise ImapError(f"{type(exc).__name__} talking to {target!r}: {exc}") from None
        except ImapError:
            await _close(client)
            raise
        try:
            yield session
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.logout(), timeout)
            await _close(client)

    async def _starttls(self) -> None:
        protocol = self._client.protocol
        await self._client.protocol.capability()
        if "STARTTLS" not in protocol.capabilities:
            raise ImapError(f"{self._target!r}: the server does not offer STARTTLS")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        _check(
            await asyncio.wait_for(protocol.execute(command), self._target.timeout_seconds),
            "STARTTLS",
        )
        loop = asyncio.get_running_loop()
        protocol.transport = await asyncio.wait_for(
            loop.start_tls(
                protocol.transport,
                protocol,
                _tls_context(self._target),
                server_hostname=self._target.host,
            ),
            self._target.timeout_seconds,
        )
        await protocol.capability()  # RFC 3501: capabilities must be asked again after TLS

    async def _select(self) -> None:
        response = _check(
            await self._client.select(_quoted(self._target.folder)),
            f"SELECT {self._target.folder}",
        )
        for line in response.lines:
            match = _UIDVALIDITY.search(line) if isinstance(line, bytes) else None
            if match:
                self.uidvalidity = int(match[1])
                return
        raise ImapError(f"{self._target!r}: SELECT gave no UIDVALIDITY")

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return _check(await asyncio.wait_for(coro, self._target.timeout_seconds), what)
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            raise ImapError(f"{what}: {type(exc).__name__}: {exc}") from None

    async def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above `last_uid`, ascending (`n:*` also names the highest UID: filtered)."""
        response = await self._call(
            "UID SEARCH", self._client.uid_search(f"UID {last_uid + 1}:*", charset=None)
        )
        uids: set[int] = set()
        for line in response.lines:
            if not isinstance(line, bytes):
                continue
            text = line.decode("ascii", "replace").strip()
            if text.upper().startswith("SEARCH"):
                text = text[6:]
            uids.update(int(tok) for tok in text.split() if tok.isdigit())
        return sorted(uid for uid in uids if uid > last_uid)

    async def fetch(self, uid: int) -> bytes | None:
        """The whole message, without setting `\\Seen`; None when it vanished meanwhile."""
        response = await self._call(
            f"UID FETCH {uid}", self._client.uid("fetch", str(uid), "(UID BODY.PEEK[])")
        )
        lines = response.lines
        for i, line in enumerate(lines):
            if isinstance(line, bytes) and b"FETCH" in line and i + 1 < len(lines):
                match = _FETCH_UID.search(line)
                body = lines[i + 1]
                if (match is None or int(match[1]) == uid) and isinstance(body, bytes | bytearray):
                    return bytes(body)
        return None

    async def mark_seen(self, uid: int) -> None:
        await self._call("UID STORE", self._client.uid("store", str(uid), "+FLAGS", "(\\Seen)"))

    async def move(self, uid: int, folder: str) -> None:
        """Move to `folder` (UID MOVE when offered, else COPY + \\Deleted + EXPUNGE)."""
        target = _quoted(folder)
        try:
            await self._move(uid, target)
        except ImapError as exc:
            if "TRYCREATE" not in str(exc):
                raise
            # RFC 3501 7.1: the folder does not exist yet; create it once, then move.
            await self._call(f"CREATE {folder}", self._client.create(target))
            await self._move(uid, target)

    async def _move(self, uid: int, target: str) -> None:
        if self._client.has_capability("MOVE"):
            await self._call("UID MOVE", self._client.protocol.move(str(uid), target, by_uid=True))
            return
        await self._call("UID COPY", self._client.uid("copy", str(uid), target))
        await self._call("UID STORE", self._client.uid("store", str(uid), "+FLAGS", "(\\Deleted)"))
        if self._client.has_capability("UIDPLUS"):
            await self._call("UID EXPUNGE", self._client.uid("expunge", str(uid)))
        else:
            await self._call("EXPUNGE", self._client.expunge())


async def _close(client: Any) -> None:
    if client is None:
        return
    with contextlib.suppress(Exception):
        transport = client.protocol.transport
        if transport is not None:
            transport.close()
    task = getattr(client, "_client_task", None)
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
