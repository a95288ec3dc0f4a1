# SPDX-License-Identifier: BUSL-1.1
"""Where offloaded files live: any fsspec URL (`file://` built in; `s3://`, `gs://`, `az://` with
the `s3`, `gcs`, `azure` extras).

Objects are laid out as the reference's (section 6.6): `<storage_url>/<file_id>/<name>`, with a
name made safe for any backend (no separators, no control characters, no leading dots). Every
call streams in `CHUNK_BYTES` pieces, so a 200 MB file never sits whole in memory, and runs in a
worker thread (fsspec's sync API; s3fs and friends run their own event loop for it).

Backend options that are not in the URL (an S3 `endpoint_url` for MinIO, ...) come from the
instance setting `GMP_LARGE_FILE_STORAGE_OPTIONS`, keyed by scheme; credentials come from each
backend's usual environment (`AWS_*`, `GOOGLE_APPLICATION_CREDENTIALS`, `AZURE_STORAGE_*`).
Failures of any backend are raised as `StorageError`, with the cause chained.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import unicodedata
from collections.abc import AsyncIterator, Mapping
from typing import IO, Any
from urllib.parse import urlsplit

import fsspec
from fsspec.core import url_to_fs

from mail_proxy.errors import MailProxyError

CHUNK_BYTES = 1024 * 1024
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
_MAX_NAME_BYTES = 200


class StorageError(MailProxyError):
    """The storage backend failed or is not installed; the caller decides what it means."""


def safe_name(filename: str) -> str:
    """A file name that is one path segment on every backend and stays readable.

    `../../etc/passwd` -> `etc_passwd`; control characters and separators become `_`.
    """
    name = unicodedata.normalize("NFC", filename)
    name = _UNSAFE.sub("_", name).strip(" ._") or "file.bin"
    while len(name.encode()) > _MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        name = (stem[:-1] + dot + ext) if stem and len(ext) < 16 else name[:-1]
    return name


def scheme_of(storage_url: str) -> str:
    return urlsplit(storage_url).scheme.lower() or "file"


class FileStore:
    """One storage URL. Paths handed out are backend paths (`bucket/prefix/<id>/<name>`)."""

    def __init__(
        self, storage_url: str, options: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        self.storage_url = storage_url
        self.scheme = scheme_of(storage_url)
        self._options = dict((options or {}).get(self.scheme, {}))
        if self.scheme == "s3":
            # Presigned URLs in SigV4 (what every AWS region accepts; valid up to 7 days).
            config = dict(self._options.get("config_kwargs") or {})
            config.setdefault("signature_version", "s3v4")
            self._options["config_kwargs"] = config
        self._fs: fsspec.AbstractFileSystem | None = None
        self._root = ""

    def _filesystem(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            try:
                fs, root = url_to_fs(self.storage_url, **self._options)
            except ImportError as exc:
                raise StorageError(
                    f"no storage backend for {self.scheme}:// (install mail-proxy[{self.scheme}])"
                ) from exc
            except (ValueError, TypeError, OSError) as exc:
                raise StorageError(f"unusable storage URL ({type(exc).__name__})") from exc
            self._fs, self._root = fs, str(root).rstrip("/")
        return self._fs

    def object_path(self, file_id: str, filename: str) -> str:
        self._filesystem()
        return f"{self._root}/{file_id}/{safe_name(filename)}"

    async def _call(self, what: str, func: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(func, *args)
        except StorageError:
            raise
        except FileNotFoundError:
            raise
        except Exception as exc:  # every backend has its own tree; one type for callers
            raise StorageError(f"storage {what} failed ({type(exc).__name__})") from exc

    async def upload(self, source: IO[bytes], path: str) -> None:
        """Copy `source` (read from its start) to `path`, chunk by chunk."""

        def copy() -> None:
            fs = self._filesystem()
            parent = path.rsplit("/", 1)[0]
            if self.scheme == "file":
                fs.makedirs(parent, exist_ok=True)
            source.seek(0)
            with fs.open(path, "wb", block_size=8 * CHUNK_BYTES) as out:
                shutil.copyfileobj(source, out, CHUNK_BYTES)

        await self._call("upload", copy)

    async def read(self, path: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `start..end` (inclusive) of the object, in chunks; `FileNotFoundError` if gone."""
        handle = await self._call(
            "read",
            lambda: self._filesystem().open(
                path, "rb", block_size=CHUNK_BYTES, cache_type="readahead"
            ),
        )
        try:
            await self._call("read", handle.seek, start)
            remaining = end - start + 1
            while remaining > 0:
                chunk: bytes = await self._call("read", handle.read, min(CHUNK_BYTES, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def exists(self, path: str) -> bool:
        return bool(await self._call("lookup", lambda: self._filesystem().exists(path)))

    async def delete(self, path: str) -> None:
        """Remove the object and its `<file_id>` folder; an object already gone is fine."""

        def remove() -> None:
            fs = self._filesystem()
            folder = path.rsplit("/", 1)[0]
            try:
                fs.rm(folder, recursive=True)
            except FileNotFoundError:
                pass

        await self._call("delete", remove)

    async def presign(self, path: str, expires_in_seconds: int) -> str:
        """A URL the storage itself serves until the expiry; `StorageError` if it cannot sign."""

        def sign() -> str:
            fs = self._filesystem()
            try:
                return str(fs.sign(path, expiration=expires_in_seconds))
            except NotImplementedError as exc:
                raise StorageError(f"{self.scheme}:// cannot sign URLs") from exc

        result: str = await self._call("signing", sign)
        return result
