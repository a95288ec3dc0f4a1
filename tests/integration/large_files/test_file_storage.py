"""`file://` storage end to end (SPEC section 6, issue 12): send, receive at aiosmtpd, follow the
link over HTTP, get the exact bytes; HEAD and Range; tampering 404, expiry 410, lifespan after
the first download, cleanup; reject, warn and the fallbacks of v0.6."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from starlette.requests import Request
from starlette.responses import Response

from mail_proxy.config import Settings
from mail_proxy.encryption import decode_key, generate_key
from mail_proxy.large_files.links import LinkSigner
from mail_proxy.metrics import Metrics
from mail_proxy_sender.maintenance.large_file_cleanup import delete_due_files
from tests.integration.api.conftest import running_api
from tests.integration.large_files.conftest import (
    SECRET,
    Offload,
    another_api_pod,
    b64,
    body_text,
    links,
    received,
)
from tests.integration.sender.conftest import World, counter, eventually, running_sender
from tests.integration.sender.servers import Handler, HttpApp, SmtpSink, http_server, smtp_server

BIG = os.urandom(300_000)  # over the 0.1 MiB threshold of the tests' tenant
SMALL = b"small text attachment"


async def test_rewrite_sends_a_link_that_downloads_the_exact_file(offload: Offload) -> None:
    await offload.tenant()
    sink, ctx = await offload.send(
        [
            {"filename": "big report.bin", "storage_path": b64(BIG)},
            {"filename": "notes.txt", "storage_path": b64(SMALL)},
        ]
    )
    assert (await offload.world.message("acme", "m1"))["state"] == "sent"
    msg = received(sink)
    attached = [(p.get_filename(), p.get_payload(decode=True)) for p in msg.iter_attachments()]
    assert attached == [("notes.txt", SMALL)]  # the big one became a link
    assert len(sink.received[0].data) < 10_000
    text = body_text(msg)
    assert text.startswith(
        "hi\n\n---\nLarge attachments available for download:\n  - big report.bin (0.3 MB): "
    )
    assert text.endswith("(Links will expire after the configured retention period.)")
    [url] = links(text)
    assert url.startswith(offload.base_url + "/download/")
    assert url.endswith("/big%20report.bin")
    assert counter(ctx, "gmp_large_files_total", tenant_id="acme", outcome="uploaded") == 1

    r = await offload.api.client.get(url)
    assert r.status_code == 200
    assert r.content == BIG
    assert r.headers["content-disposition"].startswith("attachment;")
    assert r.headers["x-content-type-options"] == "nosniff"

    head = await offload.api.client.head(url)
    assert (head.status_code, head.headers["content-length"], head.content) == (
        200,
        str(len(BIG)),
        b"",
    )
    part = await offload.api.client.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(BIG)}"
    assert part.content == BIG[1000:2000]
    tail = await offload.api.client.get(url, headers={"Range": "bytes=-10"})
    assert tail.content == BIG[-10:]
    beyond = await offload.api.client.get(url, headers={"Range": f"bytes={len(BIG)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(BIG)}"
    samples = offload.api.metrics.registry.get_sample_value(
        "gmp_large_file_downloads_total", {"tenant_id": "acme"}
    )
    assert samples == 3  # GETs count, HEAD and the refused range do not

    # Any API pod serves any link: another API process on the same database and secret.
    path = url.removeprefix(offload.base_url)
    async with another_api_pod(offload.world.dsn, SECRET) as other_pod:
        assert (await other_pod.get(path)).content == BIG
    # A pod with another secret refuses it as not ours.
    async with another_api_pod(offload.world.dsn, b"z" * 40) as stranger:
        assert (await stranger.get(path)).status_code == 404


async def test_html_body_gets_the_html_footer(offload: Offload) -> None:
    await offload.tenant()
    sink, _ = await offload.send(
        [{"filename": "<b>x</b>.bin", "storage_path": b64(BIG)}],
        message={"content_type": "html", "body": "<p>Hello</p>"},
    )
    html = body_text(received(sink), "html")
    assert html.startswith('<p>Hello</p><hr style="margin-top: 20px;"><p><strong>Large')
    assert "&lt;b&gt;x&lt;/b&gt;.bin</a> (0.3 MB)</li>" in html
    [url] = links(html)
    r = await offload.api.client.get(url.replace("&amp;", "&"))
    assert r.content == BIG


async def test_tampered_links_are_404_and_expired_ones_410(offload: Offload) -> None:
    await offload.tenant()
    sink, _ = await offload.send([{"filename": "a.bin", "storage_path": b64(BIG)}])
    [url] = links(body_text(received(sink)))
    prefix, token, name = url.rsplit("/", 2)
    file_id, expires, signature = token.split("-")
    client = offload.api.client
    for bad in (
        f"{prefix}/{file_id}-{int(expires) + 1}-{signature}/{name}",
        f"{prefix}/{'0' * 32}-{expires}-{signature}/{name}",
        f"{prefix}/{token}/other.bin",
        f"{prefix}/{token[:-1]}0/{name}"
        if not token.endswith("0")
        else f"{prefix}/{token[:-1]}1/{name}",
        f"{prefix}/{token}/..%2F..%2Fetc%2Fpasswd",
        f"{prefix}/nonsense/{name}",
    ):
        r = await client.get(bad)
        assert r.status_code == 404, bad
        # ("Not Found" is the router's: an encoded slash makes the path another route's)
        assert r.json()["detail"] in ("download link not found", "Not Found")
    # The same file under a genuine signature whose expiry has passed.
    past = int(time.time()) - 1
    expired = LinkSigner(SECRET).token(file_id, name, past)
    r = await client.get(f"{prefix}/{expired}/{name}")
    assert (r.status_code, r.json()) == (410, {"detail": "download link expired"})
    assert (await client.get(url)).status_code == 200  # the genuine link still works


async def test_lifespan_after_first_download_then_cleanup(offload: Offload) -> None:
    await offload.tenant(lifespan_after_download_days=2, file_ttl_days=30)
    sink, _ = await offload.send([{"filename": "a.bin", "storage_path": b64(BIG)}])
    [url] = links(body_text(received(sink)))
    world = offload.world
    row = await world.fetchval("SELECT row_to_json(f)::text FROM large_files f")
    assert row is not None
    before = await world.fetchval("SELECT delete_after - created_at FROM large_files")
    assert before == 30 * 86_400
    assert (await offload.api.client.head(url)).status_code == 200  # HEAD starts nothing
    assert await world.fetchval("SELECT first_download_at FROM large_files") is None

    assert (await offload.api.client.get(url)).content == BIG
    first, after = await _download_times(offload)
    assert abs(after - (first + 2 * 86_400)) <= 1
    assert (await offload.api.client.get(url)).status_code == 200  # within the lifespan
    _, again = await _download_times(offload)
    assert again == after  # later downloads do not extend it

    # Three days later (moved in the database: the clock of every pod).
    await world.execute(
        "UPDATE large_files SET first_download_at = first_download_at - 259200, "
        "delete_after = delete_after - 259200"
    )
    assert (await offload.api.client.get(url)).status_code == 410
    path = Path(await world.fetchval("SELECT object_path FROM large_files"))
    assert path.exists()
    metrics = Metrics()
    deleted = await delete_due_files(world.pool, Settings(), metrics, now=int(time.time()))
    assert deleted == 1
    assert not path.exists()
    assert await world.fetchval("SELECT count(*) FROM large_files") == 0
    assert (
        metrics.registry.get_sample_value("gmp_large_file_deletions_total", {"result": "deleted"})
        == 1
    )
    assert (await offload.api.client.get(url)).status_code == 410


async def _download_times(offload: Offload) -> tuple[int, int]:
    async with offload.world.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT first_download_at, delete_after FROM large_files")
    assert row is not None
    return row["first_download_at"], row["delete_after"]


async def test_cleanup_deletes_only_due_files_in_batches(offload: Offload) -> None:
    await offload.tenant()
    await offload.send([{"filename": f"f{i}.bin", "storage_path": b64(BIG)} for i in range(5)])
    world = offload.world
    assert await world.fetchval("SELECT count(*) FROM large_files") == 5
    await world.execute(
        "UPDATE large_files SET delete_after = 1 WHERE filename IN ('f0.bin','f1.bin','f2.bin')"
    )
    settings = Settings(large_file_cleanup_batch=2)
    # Two pods at once: one holds the job at a time (the other skips while it is held), and
    # between them every due file is deleted exactly once.
    now = int(time.time())
    deleted = await asyncio.gather(
        delete_due_files(world.pool, settings, Metrics(), now=now),
        delete_due_files(world.pool, settings, Metrics(), now=now),
    )
    assert sum(deleted) == 3
    left = await world.fetchval(
        "SELECT string_agg(filename, ',' ORDER BY filename) FROM large_files"
    )
    assert left == "f3.bin,f4.bin"
    assert sorted(p.name for p in offload.store.glob("*/*")) == ["f3.bin", "f4.bin"]


async def test_reject_fails_the_message_with_the_v06_reason(offload: Offload) -> None:
    await offload.tenant(action="reject", storage_url=None, public_base_url=None)
    sink, ctx = await offload.send([{"filename": "big_{MD5:abcd}.bin", "storage_path": b64(BIG)}])
    row = await offload.world.message("acme", "m1")
    assert (row["state"], row["error"]) == (
        "error",
        "Attachment 'big.bin' (0.3 MB) exceeds limit (0.1 MB)",
    )
    assert sink.received == []
    assert counter(ctx, "gmp_large_files_total", tenant_id="acme", outcome="rejected") == 1


async def test_warn_attaches_normally(offload: Offload) -> None:
    await offload.tenant(action="warn")
    sink, ctx = await offload.send([{"filename": "a.bin", "storage_path": b64(BIG)}])
    msg = received(sink)
    assert [p.get_payload(decode=True) for p in msg.iter_attachments()] == [BIG]
    assert "Large attachments" not in body_text(msg)
    assert counter(ctx, "gmp_large_files_total", tenant_id="acme", outcome="warned") == 1


async def test_upload_failure_falls_back_to_attaching(offload: Offload, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    await offload.tenant(storage_url=f"file://{blocker}/sub")
    sink, ctx = await offload.send([{"filename": "a.bin", "storage_path": b64(BIG)}])
    assert [p.get_payload(decode=True) for p in received(sink).iter_attachments()] == [BIG]
    assert counter(ctx, "gmp_large_files_total", tenant_id="acme", outcome="fallback") == 1
    assert await offload.world.fetchval("SELECT count(*) FROM large_files") == 0


async def test_no_secret_falls_back_to_attaching(offload: Offload) -> None:
    await offload.tenant()
    sink, ctx = await offload.send([{"filename": "a.bin", "storage_path": b64(BIG)}], secret=None)
    assert [p.get_payload(decode=True) for p in received(sink).iter_attachments()] == [BIG]
    assert counter(ctx, "gmp_large_files_total", tenant_id="acme", outcome="fallback") == 1


async def test_too_big_to_attach_after_a_failed_upload_is_retried(
    offload: Offload, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    await offload.tenant(storage_url=f"file://{blocker}/sub")
    sink, _ = await offload.send(
        [{"filename": "a.bin", "storage_path": b64(BIG)}], attachment_max_bytes=100_000
    )
    row = await offload.world.message("acme", "m1")
    assert row["state"] == "deferred"
    [event] = await offload.world.events("acme", "m1")
    assert event["event_type"] == "deferred"
    assert "could not be offloaded" in event["description"]
    assert sink.received == []


@pytest.mark.parametrize("rendered_kept", [True, False])
async def test_a_retry_does_not_upload_again(offload: Offload, rendered_kept: bool) -> None:
    """A retry sends the bytes rendered the first time (links included); when those are not
    kept, it is built again and reuses the earlier upload of the same part and content."""
    await offload.tenant()
    sink = SmtpSink(reply="450 4.2.0 mailbox busy")
    await offload.send(
        [{"filename": "a.bin", "storage_path": b64(BIG)}],
        sink=sink,
        retry_delays_seconds=(1,),
        retry_jitter_ratio=0.0,
    )
    assert (await offload.world.message("acme", "m1"))["state"] == "deferred"
    if not rendered_kept:
        await offload.world.execute("UPDATE messages SET rendered = NULL")
    sink.reply = None
    async with smtp_server(sink) as port:
        await offload.world.execute("UPDATE accounts SET port = $1", port)
        async with running_sender(
            offload.world, download_secret=SECRET, retry_jitter_ratio=0.0
        ) as ctx:

            async def sent() -> bool:
                return (await offload.world.message("acme", "m1"))["state"] == "sent"

            await eventually(sent)
    assert await offload.world.fetchval("SELECT count(*) FROM large_files") == 1
    assert counter(ctx, "gmp_large_files_total", tenant_id="acme", outcome="uploaded") == 0
    reused = counter(ctx, "gmp_large_files_total", tenant_id="acme", outcome="reused")
    assert reused == (0 if rendered_kept else 1)
    [url] = links(body_text(received(sink)))
    assert (await offload.api.client.get(url)).content == BIG


async def test_download_route_without_secret_is_503(world: World) -> None:
    async with running_api(world.dsn, key=decode_key(generate_key())) as api:
        r = await api.client.get(f"/download/{'a' * 32}-1-{'b' * 32}/{quote('x.bin')}")
    assert r.status_code == 503


def _serving(content: bytes) -> Handler:
    async def handler(_: Request) -> Response:
        return Response(content, media_type="application/octet-stream")

    return handler


async def test_http_url_attachments_stream_through_the_outbound_guard(offload: Offload) -> None:
    """The offload fetch is the attachments' own: loopback only because the tests allow it."""
    await offload.tenant()
    async with http_server(HttpApp({"/big.bin": _serving(BIG)})) as files:
        attachment = {"filename": "big.bin", "storage_path": files.url + "/big.bin"}
        sink, _ = await offload.send([attachment])
        [url] = links(body_text(received(sink)))
        assert (await offload.api.client.get(url)).content == BIG

        await offload.world.execute("DELETE FROM messages")
        refused_sink, _ = await offload.send([attachment], outbound_allow=("localhost",))
    row = await offload.world.message("acme", "m1")
    assert row["state"] == "error"
    assert "127.0.0.1" in row["error"]
    assert refused_sink.received == []
