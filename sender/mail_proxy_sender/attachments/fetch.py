# SPDX-License-Identifier: Apache-2.0
"""Fetching attachment contents in the four modes of reference section 6, safely.

Modes (`fetch_mode`, or inferred from `storage_path`): `base64` (`base64:` prefix), `http_url`
(`http(s)://`), `filesystem` (absolute path), `endpoint` (anything else: POSTed as
`{"storage_path": ...}` to the tenant's attachment URL).

Fixes over the reference: `filesystem` reads only under `attachment_allowed_roots` (none by
default, so it is refused); the tenant's credentials go only to its own base URL's origin (an
`http_url` elsewhere gets none, and a redirect to another origin drops them); sizes are bounded
per attachment and per message; a source that fails other than with a 4xx is a temporary
failure (retried), a 4xx or unusable content a permanent one. `http_url` and `endpoint` calls go
through the outbound client: public addresses only unless allow-listed (`GMP_OUTBOUND_ALLOW`),
redirects included; a refused destination is a permanent failure naming the host.

`fetch` returns the content in memory; `fetch_spooled` streams it into a temporary file that
stays in memory only while small (the large-file offload uses it: a 200 MB attachment goes from
the source to disk to storage in chunks, through the same outbound client).
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mail_proxy.errors import OutboundError, OutboundPermanent
from mail_proxy.metrics import Metrics
from mail_proxy.mime import AttachmentPart, md5_marker
from mail_proxy_sender.attachments.cache import AttachmentCache
from mail_proxy_sender.attachments.http_auth import auth_headers, join_url, same_origin
from mail_proxy_sender.delivery.failures import PermanentFailure, TemporaryFailure
from mail_proxy_sender.outbound import OutboundClient

DEFAULT_ATTACHMENT_PATH = "/mail-proxy/attachments"
_READ_CHUNK = 1024 * 1024
# A spooled attachment stays in memory up to this size, then moves to a temporary file.
SPOOL_MEMORY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class TenantSource:
    """The tenant's side of attachment fetching (its URL and decrypted credentials)."""

    base_url: str | None
    attachment_path: str | None
    auth: Mapping[str, Any] | None = field(repr=False)


@dataclass(frozen=True)
class FetchLimits:
    timeout_seconds: float
    attachment_max_bytes: int
    message_max_bytes: int
    allowed_roots: tuple[Path, ...]


@dataclass
class SpooledAttachment:
    """An attachment's content in a temporary file (rewound), with its size and SHA-256."""

    filename: str
    mime_type: str | None
    file: IO[bytes]
    size: int
    sha256: str

    def read_all(self) -> bytes:
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        self.file.close()


class _Sink:
    """Where fetched chunks go, with the size bound checked as they arrive."""

    def __init__(self, filename: str, limit: int, write: Callable[[bytes], object]) -> None:
        self.filename = filename
        self.limit = limit
        self.size = 0
        self.digest = hashlib.sha256()
        self._write = write

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise PermanentFailure(f"Attachment {self.filename} is larger than {self.limit} bytes")
        self.digest.update(chunk)
        self._write(chunk)


def infer_mode(storage_path: str) -> str:
    if storage_path.startswith("base64:"):
        return "base64"
    if storage_path.startswith(("http://", "https://")):
        return "http_url"
    if storage_path.startswith("/"):
        return "filesystem"
    return "endpoint"


class AttachmentFetcher:
    def __init__(
        self,
        *,
        http: OutboundClient,
        cache: AttachmentCache,
        limits: FetchLimits,
        metrics: Metrics,
    ) -> None:
        self._http = http
        self._cache = cache
        self._limits = limits
        self._metrics = metrics
        self._roots = tuple(root.resolve() for root in limits.allowed_roots)

    async def fetch_all(
        self, attachments: Sequence[Mapping[str, Any]], tenant: TenantSource
    ) -> list[AttachmentPart]:
        """Every attachment of a message, fetched concurrently; raises a `DeliveryFailure`."""
        parts = await asyncio.gather(*(self.fetch(a, tenant) for a in attachments))
        total = sum(len(p.content) for p in parts)
        if total > self._limits.message_max_bytes:
            raise PermanentFailure(
                f"Attachments total {total} bytes, over the limit of "
                f"{self._limits.message_max_bytes} bytes per message"
            )
        return list(parts)

    async def fetch(self, attachment: Mapping[str, Any], tenant: TenantSource) -> AttachmentPart:
        filename = str(attachment.get("filename") or "file.bin")
        key = attachment.get("content_md5") or md5_marker(filename)
        if key:
            cached = await self._cache.get(str(key))
            self._metrics.attachment_cache.labels("hit" if cached is not None else "miss").inc()
            if cached is not None:
                return AttachmentPart(filename, cached, attachment.get("mime_type"))
        chunks: list[bytes] = []
        sink = _Sink(filename, self._limits.attachment_max_bytes, chunks.append)
        await self._fetch_into(attachment, filename, tenant, sink)
        content = b"".join(chunks)
        if key:
            await self._cache.put(content)
        return AttachmentPart(filename, content, attachment.get("mime_type"))

    async def fetch_spooled(
        self,
        attachment: Mapping[str, Any],
        tenant: TenantSource,
        *,
        max_bytes: int,
        spool_dir: Path | None = None,
    ) -> SpooledAttachment:
        """One attachment streamed into a temporary file of at most `max_bytes`.

        The caller closes the result. The cache is consulted as by `fetch`, and fed only with
        contents that `fetch` itself would have accepted.
        """
        filename = str(attachment.get("filename") or "file.bin")
        # Not a `with`: the open file is handed to the caller, who closes it.
        spool = tempfile.SpooledTemporaryFile(
            max_size=SPOOL_MEMORY_BYTES, dir=str(spool_dir) if spool_dir else None
        )
        try:
            sink = _Sink(filename, max_bytes, spool.write)
            key = attachment.get("content_md5") or md5_marker(filename)
            cached = await self._cache.get(str(key)) if key else None
            if key:
                self._metrics.attachment_cache.labels("hit" if cached is not None else "miss").inc()
            if cached is not None:
                sink.write(cached)
            else:
                await self._fetch_into(attachment, filename, tenant, sink)
            spooled = SpooledAttachment(
                filename, attachment.get("mime_type"), spool, sink.size, sink.digest.hexdigest()
            )
            if key and cached is None and sink.size <= self._limits.attachment_max_bytes:
                await self._cache.put(spooled.read_all())
            spool.seek(0)
            return spooled
        except BaseException:
            spool.close()
            raise

    async def _fetch_into(
        self, attachment: Mapping[str, Any], filename: str, tenant: TenantSource, sink: _Sink
    ) -> None:
        try:
            async with asyncio.timeout(self._limits.timeout_seconds):
                await self._fetch_content(attachment, filename, tenant, sink)
        except TimeoutError:
            raise TemporaryFailure(f"Attachment {filename} fetch timed out") from None

    async def _fetch_content(
        self, attachment: Mapping[str, Any], filename: str, tenant: TenantSource, sink: _Sink
    ) -> None:
        path = str(attachment.get("storage_path") or "")
        mode = attachment.get("fetch_mode") or infer_mode(path)
        if mode == "base64":
            sink.write(self._decode_base64(path, sink))
            return
        if mode == "filesystem":
            await self._read_file(path, filename, sink)
            return
        override = attachment.get("auth")
        if mode == "http_url":
            # The attachment's own `auth` is meant for its URL; the tenant's only for its origin.
            if override is not None:
                headers = auth_headers(override)
            else:
                headers = auth_headers(tenant.auth) if same_origin(path, tenant.base_url) else {}
            await self._download("GET", path, filename, sink, headers=headers)
            return
        if mode == "endpoint":
            if not tenant.base_url:
                raise PermanentFailure(
                    "No default endpoint configured and path doesn't specify one"
                )
            url = join_url(tenant.base_url, tenant.attachment_path, DEFAULT_ATTACHMENT_PATH)
            headers = auth_headers(override if override is not None else tenant.auth)
            await self._download(
                "POST", url, filename, sink, headers=headers, json={"storage_path": path}
            )
            return
        raise PermanentFailure(f"Unknown fetch_mode {mode!r} for attachment {filename}")

    @staticmethod
    def _decode_base64(data: str, sink: _Sink) -> bytes:
        text = "".join(data.removeprefix("base64:").split())
        text += "=" * (-len(text) % 4)
        if len(text) * 3 // 4 > sink.limit:
            raise PermanentFailure(f"Attachment {sink.filename} is larger than {sink.limit} bytes")
        try:
            return binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise PermanentFailure(f"Invalid base64 content: {exc}") from exc

    async def _read_file(self, path: str, filename: str, sink: _Sink) -> None:
        def read() -> None:
            target = Path(path)
            if not target.is_absolute():
                raise PermanentFailure(f"Attachment {filename}: path must be absolute")
            # One answer for "missing", "outside the roots" and "not a file": a tenant must not
            # learn what exists on the sender's disk outside the allowed roots (issue 9).
            unreadable = PermanentFailure(
                f"Attachment {filename}: no such file under the allowed attachment roots"
            )
            try:
                resolved = target.resolve(strict=True)
            except (OSError, RuntimeError, ValueError):
                raise unreadable from None
            if not any(resolved.is_relative_to(root) for root in self._roots):
                raise unreadable
            if not resolved.is_file():
                raise unreadable
            if resolved.stat().st_size > sink.limit:
                raise PermanentFailure(f"Attachment {filename} is larger than {sink.limit} bytes")
            try:
                with resolved.open("rb") as fh:
                    while chunk := fh.read(_READ_CHUNK):
                        sink.write(chunk)
            except OSError as exc:
                raise TemporaryFailure(f"Attachment {filename}: cannot read file") from exc

        await asyncio.to_thread(read)

    async def _download(
        self,
        method: str,
        url: str,
        filename: str,
        sink: _Sink,
        *,
        headers: dict[str, str],
        json: object = None,
    ) -> None:
        try:
            async with self._http.stream(method, url, headers=headers, json=json) as response:
                if 400 <= response.status_code < 500:
                    raise PermanentFailure(
                        f"Attachment fetch failed for {filename}: HTTP {response.status_code}"
                    )
                if not response.is_success:
                    raise TemporaryFailure(
                        f"Attachment fetch failed for {filename}: HTTP {response.status_code}"
                    )
                async for chunk in response.aiter_bytes():
                    sink.write(chunk)
        except OutboundPermanent as exc:
            raise PermanentFailure(f"Attachment fetch failed for {filename}: {exc}") from exc
        except OutboundError as exc:
            raise TemporaryFailure(f"Attachment fetch failed for {filename}: {exc}") from exc
