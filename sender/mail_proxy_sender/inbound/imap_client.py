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

A tenant's mailbox host (its bounce mailbox, a PEC account) is vetted like every destination
reached on a tenant's behalf (`mail_proxy_sender.outbound.destinations`): resolved once, judged
by `target.policy`, and the socket opened to the vetted address (TLS keeps the host name for
SNI and the certificate check). The instance's own mailbox (`policy` None) is the admin's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aioimaplib

from mail_proxy.errors import DestinationRefused
from mail_proxy.outbound import OutboundPolicy
from mail_proxy_sender.outbound.destinations import (
    Resolver,
    Unresolvable,
    connect_socket,
    system_resolver,
    vetted_addresses,
)

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
    # Where a tenant's mailbox may point (None: the instance's own mailbox, set by the admin).
    policy: OutboundPolicy | None = None
    resolver: Resolver = system_resolver

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


class _SocketIMAP4(aioimaplib.IMAP4):  # type: ignore[misc]  # aioimaplib ships no types
    """aioimaplib's client on a socket already connected to a vetted address: `create_client`
    (its hook for making the connection) wraps that socket, with TLS for the host name."""

    def __init__(
        self,
        sock: socket.socket,
        host: str,
        *,
        timeout: float,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._sock = sock
        super().__init__(host, 0, timeout=timeout, ssl_context=ssl_context)

    def create_client(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop | None,
        conn_lost_cb: Any = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = aioimaplib.IMAP4ClientProtocol(local_loop, conn_lost_cb)
        self._client_task = local_loop.create_task(
            local_loop.create_connection(
                lambda: self.protocol,
                sock=self._sock,
                ssl=ssl_context,
                server_hostname=host if ssl_context is not None else None,
            )
        )


async def _vetted_socket(target: ImapTarget) -> socket.socket:
    try:
        if target.policy is None:
            addresses = await target.resolver(target.host, target.port)
        else:
            addresses = await vetted_addresses(
                target.policy,
                target.host,
                target.port,
                resolver=target.resolver,
                timeout_seconds=target.timeout_seconds,
                purpose="imap",
            )
    except (DestinationRefused, Unresolvable) as exc:
        raise ImapError(f"IMAP host {exc}") from None
    except OSError as exc:  # the instance mailbox's name did not resolve
        raise ImapError(f"cannot resolve {target.host[:100]!r}: {exc}") from None
    return await connect_socket(addresses, target.port, timeout_seconds=target.timeout_seconds)


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
        sock: socket.socket | None = None
        try:
            sock = await _vetted_socket(target)
            client = _SocketIMAP4(
                sock,
                target.host,
                timeout=timeout,
                ssl_context=_tls_context(target) if target.security == "ssl" else None,
            )
            await client.wait_hello_from_server()
            session = cls(client, target)
            if target.security == "starttls":
                await session._starttls()
            _check(await client.login(target.user, target.password), "LOGIN")
            await session._select()
        except (OSError, TimeoutError, ssl.SSLError, aioimaplib.AioImapException) as exc:
            await _close(client, sock)
            raise ImapError(f"{type(exc).__name__} talking to {target!r}: {exc}") from None
        except ImapError:
            await _close(client, sock)
            raise
        try:
            yield session
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.logout(), timeout)
            await _close(client, sock)

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


async def _close(client: Any, sock: socket.socket | None = None) -> None:
    if sock is not None:
        sock.close()  # once asyncio wraps it, the transport closes it too: closing twice is fine
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
