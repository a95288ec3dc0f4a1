# SPDX-License-Identifier: BUSL-1.1
"""`GET`/`HEAD /download/{token}/{filename}`: offloaded attachments, streamed from storage.

No API token: the signed link is the credential (mail_proxy.large_files.links). Any API pod
serves any link (shared secret, shared database, shared storage). Answers: 200 (or 206 for a
single byte `Range`), 404 for a link that was not signed by us (tampered id, name or expiry),
410 once the link expired or its file's lifespan after the first download ended (or the file was
deleted), 416 for a range past the end, 503 when no download secret is configured or the storage
does not answer. A GET counts a download; the first one starts `lifespan_after_download_days`.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import StreamingResponse

from mail_proxy.db import large_files as db_files
from mail_proxy.large_files.links import LinkExpired, LinkInvalid, LinkSigner
from mail_proxy.large_files.store import FileStore, StorageError
from mail_proxy_api.byte_range import ByteRange, Unsatisfiable, parse_range
from mail_proxy_api.context import Ctx

router = APIRouter(tags=["downloads"])
_MIME = re.compile(r"^[A-Za-z0-9][\w.+-]{0,63}/[A-Za-z0-9][\w.+-]{0,127}$")
_NOT_FOUND = "download link not found"
_GONE = "download link expired"


def _disposition(filename: str) -> str:
    fallback = filename.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get("/download/{token}/{filename}")
async def download(token: str, filename: str, request: Request, ctx: Ctx) -> Response:
    """The offloaded file named by a signed link (SPEC section 13, large files)."""
    return await _serve(token, filename, request, ctx)


@router.head("/download/{token}/{filename}")
async def download_headers(token: str, filename: str, request: Request, ctx: Ctx) -> Response:
    """The headers `GET` would answer (size, name, ranges), without the body or a download."""
    return await _serve(token, filename, request, ctx)


async def _serve(token: str, filename: str, request: Request, ctx: Ctx) -> Response:
    if not ctx.download_secret:
        raise HTTPException(503, "download links are not configured (GMP_DOWNLOAD_SECRET)")
    now = time.time()
    try:
        link = LinkSigner(ctx.download_secret).verify(token, filename, now=now)
    except LinkInvalid:
        raise HTTPException(404, _NOT_FOUND) from None
    except LinkExpired:
        raise HTTPException(410, _GONE) from None
    async with ctx.pool.acquire() as conn:
        row = await db_files.get_file(conn, file_id=link.file_id)
    if row is None or row["delete_after"] <= now:
        raise HTTPException(410, _GONE)
    if row["filename"] != filename:
        raise HTTPException(404, _NOT_FOUND)
    size: int = row["size_bytes"]
    etag = f'"{row["file_id"]}"'
    try:
        wanted = parse_range(request.headers.get("range"), size)
    except Unsatisfiable:
        raise HTTPException(
            416, "requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"}
        ) from None
    if wanted is not None and request.headers.get("if-range", etag) != etag:
        wanted = None
    store = FileStore(row["storage_url"], ctx.settings.large_file_storage_options)
    try:
        present = await store.exists(row["object_path"])
    except StorageError:
        raise HTTPException(503, "storage unavailable, try again later") from None
    if not present:
        raise HTTPException(410, _GONE)
    part = wanted or ByteRange(0, size - 1)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(part.length if size else 0),
        "Content-Disposition": _disposition(filename),
        "ETag": etag,
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }
    if wanted is not None:
        headers["Content-Range"] = f"bytes {wanted.start}-{wanted.end}/{size}"
    media_type = row["content_type"] if _MIME.match(row["content_type"] or "") else None
    status = 206 if wanted is not None else 200
    media_type = media_type or "application/octet-stream"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    async with ctx.pool.acquire() as conn:
        await db_files.record_download(conn, file_id=row["file_id"], now=int(now))
    ctx.metrics.large_file_downloads.labels(row["tenant_id"]).inc()
    body = store.read(row["object_path"], part.start, part.end) if size else _empty()
    return StreamingResponse(body, status_code=status, headers=headers, media_type=media_type)


async def _empty() -> AsyncIterator[bytes]:
    empty: tuple[bytes, ...] = ()
    for chunk in empty:
        yield chunk
