# SPDX-License-Identifier: BUSL-1.1
"""The tenant's large-file policy applied to one message's attachments (reference section 6.6).

Every attachment is streamed into a spooled temporary file (memory only while small), so its
size is known without holding it. Then, per attachment over `max_size_mb`:

- `warn`: logged and counted, attached normally (the ordinary size limits still apply);
- `reject`: the message fails permanently with the v0.6 reason text;
- `rewrite`: uploaded to the tenant's storage in chunks, recorded for expiry and cleanup, and
  replaced by a link in the body footer. A retry of the same message reuses its earlier upload.

Links: the tenant's `public_base_url` (or `GMP_DOWNLOAD_BASE_URL`) + the API's signed download
route; with no `public_base_url`, an `s3://`/`gs://` store signs its own URL when the TTL is
within the 7 days its V4 signatures allow and no lifespan-after-download must be tracked (the
storage serves it, so nobody would see the first download). An upload or signing failure falls
back to attaching normally and is counted (`gmp_large_files{outcome="fallback"}`); an attachment
too big to attach is then retried later instead (a temporary failure).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from mail_proxy.config import Settings
from mail_proxy.db import large_files as db_files
from mail_proxy.large_files.footer import OffloadedLink
from mail_proxy.large_files.links import LinkSigner, download_url
from mail_proxy.large_files.policy import (
    PRESIGN_MAX_SECONDS,
    SELF_SIGNING_SCHEMES,
    Action,
    LargeFilePolicy,
    reject_reason,
)
from mail_proxy.large_files.store import FileStore, StorageError, safe_name
from mail_proxy.metrics import Metrics
from mail_proxy.mime import AttachmentPart, clean_filename
from mail_proxy_sender.attachments.fetch import AttachmentFetcher, SpooledAttachment, TenantSource
from mail_proxy_sender.delivery.failures import PermanentFailure, TemporaryFailure

log = logging.getLogger(__name__)


class _CannotLink(Exception):
    """The file cannot be offloaded now; the attachment is sent normally instead."""


@dataclass
class Prepared:
    """What goes into the message: attachments to attach and links for the footer."""

    parts: list[AttachmentPart] = field(default_factory=list)
    links: list[OffloadedLink] = field(default_factory=list)


@dataclass(frozen=True)
class MessageRef:
    tenant_id: str
    message_pk: int
    message_id: str


class Offloader:
    def __init__(
        self,
        *,
        fetcher: AttachmentFetcher,
        pool: asyncpg.Pool,
        signer: LinkSigner | None,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self._fetcher = fetcher
        self._pool = pool
        self._signer = signer
        self._settings = settings
        self._metrics = metrics

    async def prepare(
        self,
        attachments: Sequence[Mapping[str, Any]],
        tenant: TenantSource,
        policy: LargeFilePolicy,
        message: MessageRef,
    ) -> Prepared:
        """Attachments and links for one message; raises a `DeliveryFailure`."""
        s = self._settings
        limit = s.attachment_max_bytes if policy.action is Action.WARN else s.large_file_max_bytes
        limit = max(limit, s.attachment_max_bytes)
        results = await asyncio.gather(
            *(
                self._fetcher.fetch_spooled(
                    a, tenant, max_bytes=limit, spool_dir=s.large_file_spool_dir
                )
                for a in attachments
            ),
            return_exceptions=True,
        )
        spooled = [r for r in results if isinstance(r, SpooledAttachment)]
        try:
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            return await self._apply(spooled, policy, message)
        finally:
            for item in spooled:
                item.close()

    async def _apply(
        self, spooled: list[SpooledAttachment], policy: LargeFilePolicy, message: MessageRef
    ) -> Prepared:
        prepared = Prepared()
        inline_total = 0
        for index, item in enumerate(spooled):
            name = clean_filename(item.filename)
            if policy.is_oversize(item.size):
                if policy.action is Action.REJECT:
                    self._count(message, "rejected")
                    raise PermanentFailure(reject_reason(name, item.size, policy.max_size_mb))
                if policy.action is Action.REWRITE:
                    link = await self._try_offload(item, index, name, policy, message)
                    if link is not None:
                        prepared.links.append(link)
                        continue
                else:
                    self._count(message, "warned")
                    log.warning(
                        "large attachment sent anyway (large_file_config action warn)",
                        extra={
                            "action": "large_file_warn",
                            "tenant_id": message.tenant_id,
                            "message_id": message.message_id,
                            "size_bytes": item.size,
                        },
                    )
            prepared.parts.append(self._inline(item))
            inline_total += item.size
        if inline_total > self._settings.message_max_bytes:
            raise PermanentFailure(
                f"Attachments total {inline_total} bytes, over the limit of "
                f"{self._settings.message_max_bytes} bytes per message"
            )
        return prepared

    def _inline(self, item: SpooledAttachment) -> AttachmentPart:
        if item.size > self._settings.attachment_max_bytes:
            raise PermanentFailure(
                f"Attachment {item.filename} is larger than "
                f"{self._settings.attachment_max_bytes} bytes"
            )
        return AttachmentPart(item.filename, item.read_all(), item.mime_type)

    def _count(self, message: MessageRef, outcome: str) -> None:
        self._metrics.large_files.labels(message.tenant_id, outcome).inc()

    async def _try_offload(
        self,
        item: SpooledAttachment,
        index: int,
        name: str,
        policy: LargeFilePolicy,
        message: MessageRef,
    ) -> OffloadedLink | None:
        try:
            return await self._offload(item, index, name, policy, message)
        except _CannotLink as exc:
            self._count(message, "fallback")
            log.error(
                "large attachment could not be offloaded; attaching it normally",
                extra={
                    "action": "large_file_fallback",
                    "tenant_id": message.tenant_id,
                    "message_id": message.message_id,
                    "reason": str(exc),
                },
            )
            if item.size > self._settings.attachment_max_bytes:
                raise TemporaryFailure(
                    f"Attachment {name} could not be offloaded ({exc}) and is too large to attach"
                ) from exc
            return None

    async def _offload(
        self,
        item: SpooledAttachment,
        index: int,
        name: str,
        policy: LargeFilePolicy,
        message: MessageRef,
    ) -> OffloadedLink:
        if not policy.storage_url:
            raise _CannotLink("no storage_url configured")
        store = FileStore(policy.storage_url, self._settings.large_file_storage_options)
        link_name = safe_name(name)
        now = int(time.time())
        async with self._pool.acquire() as conn:
            row = await db_files.reusable_file(
                conn,
                message_pk=message.message_pk,
                part_index=index,
                sha256=item.sha256,
                filename=link_name,
                storage_url=policy.storage_url,
                now=now,
            )
        if row is not None:
            file_id, path, expires_at = row["file_id"], row["object_path"], row["expires_at"]
            outcome = "reused"
        else:
            file_id, expires_at = uuid.uuid4().hex, now + policy.ttl_seconds
            path = await self._upload(store, item, index, file_id, link_name, policy, message, now)
            outcome = "uploaded"
        url = await self._link(store, path, file_id, link_name, expires_at, policy, now)
        self._count(message, outcome)
        log.info(
            "large attachment offloaded",
            extra={
                "action": "large_file_" + outcome,
                "tenant_id": message.tenant_id,
                "message_id": message.message_id,
                "file_id": file_id,
                "size_bytes": item.size,
            },
        )
        return OffloadedLink(name, item.size, url)

    async def _upload(
        self,
        store: FileStore,
        item: SpooledAttachment,
        index: int,
        file_id: str,
        link_name: str,
        policy: LargeFilePolicy,
        message: MessageRef,
        now: int,
    ) -> str:
        try:
            path = store.object_path(file_id, link_name)
        except StorageError as exc:
            raise _CannotLink(str(exc)) from exc
        new = db_files.NewFile(
            file_id=file_id,
            tenant_id=message.tenant_id,
            message_pk=message.message_pk,
            part_index=index,
            storage_url=policy.storage_url or "",
            object_path=path,
            filename=link_name,
            content_type=item.mime_type,
            size_bytes=item.size,
            sha256=item.sha256,
            created_at=now,
            expires_at=now + policy.ttl_seconds,
            lifespan_seconds=policy.lifespan_seconds,
        )
        # Recorded before the upload: a crash mid-way leaves a row the cleanup job deletes at
        # expiry, never an object nobody knows about.
        async with self._pool.acquire() as conn:
            await db_files.record_file(conn, file=new)
        try:
            await store.upload(item.file, path)
        except (StorageError, OSError) as exc:
            async with self._pool.acquire() as conn:
                await db_files.forget(conn, file_ids=[file_id])
            raise _CannotLink(str(exc)) from exc
        return path

    async def _link(
        self,
        store: FileStore,
        path: str,
        file_id: str,
        link_name: str,
        expires_at: int,
        policy: LargeFilePolicy,
        now: int,
    ) -> str:
        base = policy.public_base_url
        if (
            base is None
            and store.scheme in SELF_SIGNING_SCHEMES
            and policy.lifespan_seconds is None
            and expires_at - now <= PRESIGN_MAX_SECONDS
        ):
            try:
                return await store.presign(path, expires_at - now)
            except StorageError as exc:
                if self._settings.download_base_url is None:
                    raise _CannotLink(str(exc)) from exc
        base = base or self._settings.download_base_url
        if base is None:
            raise _CannotLink("no public_base_url for download links (nor GMP_DOWNLOAD_BASE_URL)")
        if self._signer is None:
            raise _CannotLink("no download secret configured (GMP_DOWNLOAD_SECRET)")
        return download_url(base, self._signer.token(file_id, link_name, expires_at), link_name)
