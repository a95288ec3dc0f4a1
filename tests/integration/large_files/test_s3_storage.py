"""S3 storage against a real S3 HTTP server on loopback (moto server mode) with s3fs: upload,
presigned links within SigV4's 7 days, the download route beyond, cleanup of the objects."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import s3fs

from mail_proxy.config import Settings
from mail_proxy.encryption import decode_key, generate_key
from mail_proxy.metrics import Metrics
from mail_proxy_sender.maintenance.large_file_cleanup import delete_due_files
from tests.integration.api.conftest import running_api
from tests.integration.large_files.conftest import (
    SECRET,
    Offload,
    S3Server,
    b64,
    body_text,
    links,
    received,
)
from tests.integration.sender.conftest import World, counter

BIG = os.urandom(9 * 1024 * 1024 + 123)  # over one 8 MiB upload part: a multipart upload
BUCKET = "mail-attachments"


@pytest.fixture
async def s3_offload(world: World, moto_s3: S3Server) -> AsyncIterator[Offload]:
    async with httpx.AsyncClient() as client:  # moto takes an unsigned CreateBucket
        assert (await client.put(f"{moto_s3.endpoint_url}/{BUCKET}")).status_code == 200
    settings = Settings(large_file_storage_options=moto_s3.options)
    async with running_api(
        world.dsn, settings=settings, key=decode_key(generate_key()), download_secret=SECRET
    ) as api:
        yield Offload(world, api, store=None)  # type: ignore[arg-type]


async def _objects(moto_s3: S3Server) -> list[str]:
    fs = s3fs.S3FileSystem(**moto_s3.options["s3"], skip_instance_cache=True)
    return sorted(await asyncio.to_thread(fs.find, BUCKET))


async def test_ttl_within_7_days_gives_a_presigned_s3_link(
    s3_offload: Offload, moto_s3: S3Server
) -> None:
    await s3_offload.tenant(
        storage_url=f"s3://{BUCKET}/mail", public_base_url=None, file_ttl_days=7
    )
    sink, ctx = await s3_offload.send(
        [{"filename": "video.mp4", "storage_path": b64(BIG)}],
        large_file_storage_options=moto_s3.options,
        attachment_max_bytes=20 * 1024 * 1024,
    )
    [url] = links(body_text(received(sink)))
    assert url.startswith(moto_s3.endpoint_url + f"/{BUCKET}/mail/")
    assert "X-Amz-Expires=604800" in url
    async with httpx.AsyncClient() as client:
        r = await client.get(url)
    assert r.status_code == 200
    assert r.content == BIG
    assert counter(ctx, "gmp_large_files_total", tenant_id="acme", outcome="uploaded") == 1
    [key] = await _objects(moto_s3)
    assert key.endswith("/video.mp4")


async def test_ttl_beyond_7_days_goes_through_the_download_route(
    s3_offload: Offload, moto_s3: S3Server
) -> None:
    await s3_offload.tenant(storage_url=f"s3://{BUCKET}/mail", public_base_url=None)
    sink, _ = await s3_offload.send(
        [{"filename": "video.mp4", "storage_path": b64(BIG)}],
        large_file_storage_options=moto_s3.options,
        download_base_url=s3_offload.base_url,
        attachment_max_bytes=20 * 1024 * 1024,
    )
    [url] = links(body_text(received(sink)))
    assert url.startswith(s3_offload.base_url + "/download/")
    r = await s3_offload.api.client.get(url)
    assert r.status_code == 200
    assert r.content == BIG
    part = await s3_offload.api.client.get(url, headers={"Range": "bytes=8388600-8388700"})
    assert part.status_code == 206
    assert part.content == BIG[8_388_600:8_388_701]

    # Expired: the cleanup job deletes the object from the bucket, the link is gone.
    await s3_offload.world.execute("UPDATE large_files SET delete_after = 1")
    settings = Settings(large_file_storage_options=moto_s3.options)
    deleted = await delete_due_files(
        s3_offload.world.pool, settings, Metrics(), now=int(time.time())
    )
    assert deleted == 1
    assert await _objects(moto_s3) == []
    assert (await s3_offload.api.client.get(url)).status_code == 410


async def test_a_lifespan_after_download_needs_the_route_even_within_7_days(
    s3_offload: Offload, moto_s3: S3Server
) -> None:
    """A presigned URL is served by S3: nobody would see the first download."""
    await s3_offload.tenant(
        storage_url=f"s3://{BUCKET}/mail",
        public_base_url=None,
        file_ttl_days=3,
        lifespan_after_download_days=1,
    )
    sink, _ = await s3_offload.send(
        [{"filename": "a.bin", "storage_path": b64(BIG[:200_000])}],
        large_file_storage_options=moto_s3.options,
        download_base_url=s3_offload.base_url,
    )
    [url] = links(body_text(received(sink)))
    assert url.startswith(s3_offload.base_url + "/download/")
    assert (await s3_offload.api.client.get(url)).content == BIG[:200_000]


async def test_missing_bucket_falls_back_to_attaching(
    s3_offload: Offload, moto_s3: S3Server
) -> None:
    await s3_offload.tenant(storage_url="s3://no-such-bucket/mail")
    sink, ctx = await s3_offload.send(
        [{"filename": "a.bin", "storage_path": b64(BIG[:200_000])}],
        large_file_storage_options=moto_s3.options,
    )
    parts = [p.get_payload(decode=True) for p in received(sink).iter_attachments()]
    assert parts == [BIG[:200_000]]
    assert counter(ctx, "gmp_large_files_total", tenant_id="acme", outcome="fallback") == 1
