# SPDX-License-Identifier: BUSL-1.1
"""Rows of offloaded attachments: recorded at upload, touched by downloads, leased by cleanup."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class NewFile:
    file_id: str
    tenant_id: str
    message_pk: int | None
    part_index: int | None
    storage_url: str
    object_path: str
    filename: str
    content_type: str | None
    size_bytes: int
    sha256: str
    created_at: int
    expires_at: int
    lifespan_seconds: int | None


_RECORD = """
INSERT INTO large_files (file_id, tenant_id, message_pk, part_index, storage_url, object_path,
                         filename, content_type, size_bytes, sha256, created_at, expires_at,
                         lifespan_seconds, delete_after)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $12)
"""

# A retry of the same message part with the same content and storage reuses the upload, as long
# as the link still has a day to live (otherwise a fresh upload gives a fresh expiry).
_REUSABLE = """
SELECT * FROM large_files
WHERE message_pk = $1 AND part_index = $2 AND sha256 = $3 AND filename = $4
  AND storage_url = $5 AND first_download_at IS NULL AND delete_after > $6 + 86400
ORDER BY created_at DESC LIMIT 1
"""

_DOWNLOADED = """
UPDATE large_files SET
    download_count = download_count + 1,
    first_download_at = coalesce(first_download_at, $2),
    delete_after = CASE
        WHEN first_download_at IS NULL AND lifespan_seconds IS NOT NULL
        THEN least(delete_after, $2 + lifespan_seconds)
        ELSE delete_after END
WHERE file_id = $1
RETURNING *
"""

_DUE = """
SELECT file_id, tenant_id, storage_url, object_path FROM large_files
WHERE delete_after <= $1
ORDER BY delete_after
LIMIT $2
FOR UPDATE SKIP LOCKED
"""


async def record_file(conn: asyncpg.Connection, *, file: NewFile) -> None:
    await conn.execute(
        _RECORD,
        file.file_id,
        file.tenant_id,
        file.message_pk,
        file.part_index,
        file.storage_url,
        file.object_path,
        file.filename,
        file.content_type,
        file.size_bytes,
        file.sha256,
        file.created_at,
        file.expires_at,
        file.lifespan_seconds,
    )


async def reusable_file(
    conn: asyncpg.Connection,
    *,
    message_pk: int,
    part_index: int,
    sha256: str,
    filename: str,
    storage_url: str,
    now: int,
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        _REUSABLE, message_pk, part_index, sha256, filename, storage_url, now
    )
    return row


async def get_file(conn: asyncpg.Connection, *, file_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM large_files WHERE file_id = $1", file_id
    )
    return row


async def record_download(
    conn: asyncpg.Connection, *, file_id: str, now: int
) -> asyncpg.Record | None:
    """Count a download; the first one starts `lifespan_after_download_days`. The row after."""
    row: asyncpg.Record | None = await conn.fetchrow(_DOWNLOADED, file_id, now)
    return row


async def lease_due(conn: asyncpg.Connection, *, now: int, limit: int) -> list[asyncpg.Record]:
    """Files due for deletion, locked for this transaction (other pods skip them)."""
    rows: list[asyncpg.Record] = await conn.fetch(_DUE, now, limit)
    return rows


async def forget(conn: asyncpg.Connection, *, file_ids: list[str]) -> None:
    await conn.execute("DELETE FROM large_files WHERE file_id = ANY($1::text[])", file_ids)


async def note_delete_failure(
    conn: asyncpg.Connection, *, file_ids: list[str], retry_at: int
) -> None:
    """A deletion that failed is tried again at `retry_at` (the storage may be away)."""
    await conn.execute(
        "UPDATE large_files SET delete_failures = delete_failures + 1, delete_after = $2 "
        "WHERE file_id = ANY($1::text[])",
        file_ids,
        retry_at,
    )
