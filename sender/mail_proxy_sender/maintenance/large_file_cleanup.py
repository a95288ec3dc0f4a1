# SPDX-License-Identifier: BUSL-1.1
"""Deletes offloaded files whose time is up (`file_ttl_days`, or the lifespan after their first
download), every `large_file_cleanup_interval_seconds`, in batches of `large_file_cleanup_batch`.

One pod works at a time (a transaction-level advisory lock; the others skip the round), and the
due rows are locked while their objects are deleted, so nothing is deleted twice and a pod that
dies mid-batch leaves the rows for the next round. An object already gone counts as deleted; a
storage that refuses is retried a round later. Counted in `gmp_large_file_deletions`.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from mail_proxy.config import Settings
from mail_proxy.db import large_files as db_files
from mail_proxy.db.pool import DATABASE_ERRORS
from mail_proxy.large_files.store import FileStore, StorageError
from mail_proxy.metrics import Metrics
from mail_proxy_sender.delivery.waiting import first_of

log = logging.getLogger(__name__)
# pg advisory lock key: "large-file cleanup" (any constant no other job uses).
_LOCK_KEY = 0x6C66_636C
_PARALLEL_DELETES = 8


async def delete_due_files(
    pool: asyncpg.Pool, settings: Settings, metrics: Metrics, *, now: int
) -> int:
    """Delete every file due at `now`, batch by batch; the number deleted (0 if another pod
    holds the job)."""
    deleted = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LOCK_KEY):
                return deleted
            rows = await db_files.lease_due(conn, now=now, limit=settings.large_file_cleanup_batch)
            if not rows:
                return deleted
            gone, failed = await _delete_objects(rows, settings)
            if gone:
                await db_files.forget(conn, file_ids=gone)
            if failed:
                retry_at = now + int(settings.large_file_cleanup_interval_seconds)
                await db_files.note_delete_failure(conn, file_ids=failed, retry_at=retry_at)
        metrics.large_file_deletions.labels("deleted").inc(len(gone))
        metrics.large_file_deletions.labels("failed").inc(len(failed))
        deleted += len(gone)
        if failed or len(rows) < settings.large_file_cleanup_batch:
            return deleted


async def _delete_objects(
    rows: list[asyncpg.Record], settings: Settings
) -> tuple[list[str], list[str]]:
    stores: dict[str, FileStore] = {}
    limit = asyncio.Semaphore(_PARALLEL_DELETES)

    async def delete(row: asyncpg.Record) -> bool:
        url = row["storage_url"]
        store = stores.setdefault(url, FileStore(url, settings.large_file_storage_options))
        async with limit:
            try:
                await store.delete(row["object_path"])
            except StorageError as exc:
                log.warning(
                    "offloaded file not deleted; retried later",
                    extra={
                        "action": "large_file_delete_failed",
                        "tenant_id": row["tenant_id"],
                        "file_id": row["file_id"],
                        "reason": str(exc),
                    },
                )
                return False
        return True

    results = await asyncio.gather(*(delete(row) for row in rows))
    gone = [row["file_id"] for row, ok in zip(rows, results, strict=True) if ok]
    failed = [row["file_id"] for row, ok in zip(rows, results, strict=True) if not ok]
    return gone, failed


async def run_large_file_cleanup(
    pool: asyncpg.Pool, settings: Settings, metrics: Metrics, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            deleted = await delete_due_files(pool, settings, metrics, now=int(time.time()))
        except DATABASE_ERRORS as exc:  # OSError covers the storage too
            log.warning(
                "large-file cleanup failed",
                extra={"action": "large_file_cleanup_error", "error": repr(exc)},
            )
        else:
            if deleted:
                log.info(
                    "expired large files deleted",
                    extra={"action": "large_file_cleanup", "deleted": deleted},
                )
        await first_of(stop, timeout=settings.large_file_cleanup_interval_seconds)
