# SPDX-License-Identifier: Apache-2.0
"""A two-tier cache of attachment contents keyed by MD5 (reference section 6.4).

Lookups use the client's key (`content_md5` or the `{MD5:...}` filename marker); contents are
stored under their *computed* MD5, so a wrong client hash never hits. Small items live in
memory (LRU, size- and age-bounded); larger ones on disk under `<dir>/<md5[:2]>/<md5>` when a
directory is configured (age by mtime, oldest evicted past the size bound). Unlike the
reference, the memory tier works without a disk directory. Process-local.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CacheLimits:
    memory_max_bytes: int
    memory_ttl_seconds: float
    disk_dir: Path | None
    disk_max_bytes: int
    disk_ttl_seconds: float
    disk_threshold_bytes: int


class AttachmentCache:
    def __init__(self, limits: CacheLimits) -> None:
        self._limits = limits
        self._memory: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._memory_bytes = 0
        self._disk_bytes: int | None = None  # measured on first disk write

    async def get(self, md5: str) -> bytes | None:
        md5 = md5.lower()
        found = self._memory_get(md5)
        if found is not None:
            return found
        if self._limits.disk_dir is None:
            return None
        content = await asyncio.to_thread(self._disk_get, md5)
        if content is not None and len(content) < self._limits.disk_threshold_bytes:
            self._memory_put(md5, content)
        return content

    async def put(self, content: bytes) -> str:
        """Store `content`; returns its MD5 (the key it can be found under)."""
        md5 = hashlib.md5(content, usedforsecurity=False).hexdigest()
        if self._limits.disk_dir is not None and len(content) >= self._limits.disk_threshold_bytes:
            await asyncio.to_thread(self._disk_put, md5, content)
        else:
            self._memory_put(md5, content)
        return md5

    # memory tier
    def _memory_get(self, md5: str) -> bytes | None:
        item = self._memory.get(md5)
        if item is None:
            return None
        content, stored = item
        if time.monotonic() - stored > self._limits.memory_ttl_seconds:
            self._memory_drop(md5)
            return None
        self._memory.move_to_end(md5)
        return content

    def _memory_put(self, md5: str, content: bytes) -> None:
        if len(content) > self._limits.memory_max_bytes:
            return
        self._memory_drop(md5)
        self._memory[md5] = (content, time.monotonic())
        self._memory_bytes += len(content)
        while self._memory_bytes > self._limits.memory_max_bytes:
            oldest = next(iter(self._memory))
            self._memory_drop(oldest)

    def _memory_drop(self, md5: str) -> None:
        item = self._memory.pop(md5, None)
        if item is not None:
            self._memory_bytes -= len(item[0])

    # disk tier (runs in a thread)
    def _path(self, md5: str) -> Path:
        assert self._limits.disk_dir is not None
        return self._limits.disk_dir / md5[:2] / md5

    def _disk_get(self, md5: str) -> bytes | None:
        path = self._path(md5)
        try:
            if time.time() - path.stat().st_mtime > self._limits.disk_ttl_seconds:
                path.unlink(missing_ok=True)
                return None
            return path.read_bytes()
        except OSError:
            return None

    def _disk_put(self, md5: str, content: bytes) -> None:
        path = self._path(md5)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(content)
        partial.replace(path)  # atomic: readers never see half a file
        if self._disk_bytes is None:
            self._disk_bytes = sum(f.stat().st_size for f in self._files())
        else:
            self._disk_bytes += len(content)
        if self._disk_bytes > self._limits.disk_max_bytes:
            self._disk_evict()

    def _files(self) -> list[Path]:
        assert self._limits.disk_dir is not None
        return [p for p in self._limits.disk_dir.glob("??/*") if p.is_file()]

    def _disk_evict(self) -> None:
        entries = []
        for path in self._files():
            with contextlib.suppress(OSError):
                stat = path.stat()
                entries.append((stat.st_mtime, stat.st_size, path))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        target = int(self._limits.disk_max_bytes * 0.9)
        for _, size, path in entries:
            if total <= target:
                break
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size
        self._disk_bytes = total
