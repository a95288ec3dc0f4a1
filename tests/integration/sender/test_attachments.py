"""Attachments in every fetch mode, cache, limits and where credentials may go (SPEC section 6)."""

from __future__ import annotations

import asyncio
import base64
import email
import hashlib
import json
from email import policy
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mail_proxy.redact import seal_client_auth
from tests.integration.sender.conftest import World, counter, eventually, running_sender
from tests.integration.sender.servers import (
    Handler,
    HttpApp,
    SmtpSink,
    http_server,
    smtp_server,
)

PDF = b"%PDF-1.4 pretend" * 10


def serving(content: bytes = PDF, status: int = 200) -> Handler:
    async def handler(_: Request) -> Response:
        return Response(content, status_code=status, media_type="application/pdf")

    return handler


async def _final(world: World, message_id: str = "m1") -> bool:
    return (await world.message("acme", message_id))["state"] in ("sent", "error", "deferred")


async def _send(
    world: World,
    sink: SmtpSink,
    port: int,
    attachments: list[dict[str, Any]],
    *,
    tenant: dict[str, Any] | None = None,
    **settings: Any,
) -> Any:
    await world.tenant("acme", **(tenant or {}))
    await world.account("acme", "smtp1", port)
    await world.enqueue("acme", "smtp1", {"id": "m1", "attachments": attachments})
    async with running_sender(world, **settings) as ctx:
        await eventually(lambda: _final(world))
    return ctx


def _parts(sink: SmtpSink) -> list[tuple[str | None, str, bytes]]:
    msg = email.message_from_bytes(sink.received[0].data, policy=policy.default)
    return [
        (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
        for part in msg.iter_attachments()
    ]


async def test_base64_attachment(world: World) -> None:
    sink = SmtpSink()
    data = base64.b64encode(PDF).decode()
    async with smtp_server(sink) as port:
        await _send(world, sink, port, [{"filename": "a.pdf", "storage_path": "base64:" + data}])
    assert _parts(sink) == [("a.pdf", "application/pdf", PDF)]


async def test_invalid_base64_is_a_permanent_error(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await _send(world, sink, port, [{"filename": "a.pdf", "storage_path": "base64:@@@"}])
    row = await world.message("acme", "m1")
    assert (row["state"], row["error"][:22]) == ("error", "Invalid base64 content")


async def test_filesystem_under_an_allowed_root(world: World, tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "r.txt").write_bytes(b"report")
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await _send(
            world,
            sink,
            port,
            [{"filename": "r.txt", "storage_path": str(tmp_path / "docs" / "r.txt")}],
            attachment_allowed_roots=(tmp_path / "docs",),
        )
    assert _parts(sink) == [("r.txt", "text/plain", b"report")]


@pytest.mark.parametrize("roots", [(), ("docs",)])
async def test_filesystem_outside_the_allowed_roots_is_refused(
    world: World, tmp_path: Path, roots: tuple[str, ...]
) -> None:
    (tmp_path / "docs").mkdir()
    secret = tmp_path / "secret.key"
    secret.write_bytes(b"do not mail me")
    sneaky = tmp_path / "docs" / ".." / "secret.key"
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await _send(
            world,
            sink,
            port,
            [{"filename": "k.txt", "storage_path": str(sneaky)}],
            attachment_allowed_roots=tuple(tmp_path / r for r in roots),
        )
    row = await world.message("acme", "m1")
    assert row["state"] == "error"
    assert "no such file under the allowed attachment roots" in row["error"]
    assert sink.attempted == []


async def test_missing_and_forbidden_files_get_the_same_answer(
    world: World, tmp_path: Path
) -> None:
    """Errors must not tell a tenant what exists outside the allowed roots (issue 9)."""
    (tmp_path / "docs").mkdir()
    secret = tmp_path / "secret.key"
    secret.write_bytes(b"do not mail me")
    sink = SmtpSink()
    paths = [str(secret), str(tmp_path / "absent.key"), str(tmp_path / "docs"), "/etc/passwd"]
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        for n, path in enumerate(paths):
            attachment = {"filename": "k.txt", "storage_path": path}
            await world.enqueue("acme", "smtp1", {"id": f"m{n}", "attachments": [attachment]})
        async with running_sender(world, attachment_allowed_roots=(tmp_path / "docs",)):
            for n in range(len(paths)):
                await eventually(lambda n=n: _final(world, f"m{n}"))
    errors = {(await world.message("acme", f"m{n}"))["error"] for n in range(len(paths))}
    assert errors == {"Attachment k.txt: no such file under the allowed attachment roots"}
    assert sink.attempted == []


async def test_http_url_to_the_tenant_origin_carries_its_credentials(world: World) -> None:
    sink = SmtpSink()
    files = HttpApp({"/f.pdf": serving()})
    async with smtp_server(sink) as port, http_server(files) as app:
        await _send(
            world,
            sink,
            port,
            [{"filename": "f.pdf", "storage_path": app.url + "/f.pdf"}],
            tenant={"client_base_url": app.url, "client_auth": {"method": "bearer", "token": "t"}},
        )
    assert _parts(sink) == [("f.pdf", "application/pdf", PDF)]
    assert app.hits("/f.pdf")[0].headers["authorization"] == "Bearer t"


async def test_http_url_on_another_host_gets_no_credentials(world: World) -> None:
    sink = SmtpSink()
    async with (
        smtp_server(sink) as port,
        http_server(HttpApp()) as tenant_app,
        http_server(HttpApp({"/f.pdf": serving()})) as other,
    ):
        await _send(
            world,
            sink,
            port,
            [{"filename": "f.pdf", "storage_path": other.url + "/f.pdf"}],
            tenant={
                "client_base_url": tenant_app.url,
                "client_auth": {"method": "bearer", "token": "t"},
            },
        )
    assert _parts(sink) == [("f.pdf", "application/pdf", PDF)]
    assert "authorization" not in other.hits("/f.pdf")[0].headers


async def test_redirect_to_another_host_drops_the_credentials(world: World) -> None:
    sink = SmtpSink()
    async with (
        smtp_server(sink) as port,
        http_server(HttpApp({"/f.pdf": serving()})) as other,
    ):

        async def bounce(_: Request) -> Response:
            return RedirectResponse(other.url + "/f.pdf", status_code=302)

        async with http_server(HttpApp({"/go": bounce})) as tenant_app:
            await _send(
                world,
                sink,
                port,
                [{"filename": "f.pdf", "storage_path": tenant_app.url + "/go"}],
                tenant={
                    "client_base_url": tenant_app.url,
                    "client_auth": {"method": "bearer", "token": "t"},
                },
            )
    assert tenant_app.hits("/go")[0].headers["authorization"] == "Bearer t"
    assert "authorization" not in other.hits("/f.pdf")[0].headers
    assert _parts(sink) == [("f.pdf", "application/pdf", PDF)]


async def test_endpoint_mode_posts_the_storage_path_with_tenant_auth(world: World) -> None:
    async def endpoint(request: Request) -> Response:
        body = await request.json()
        return Response(f"content of {body['storage_path']}".encode())

    sink = SmtpSink()
    async with (
        smtp_server(sink) as port,
        http_server(HttpApp({"/mail-proxy/attachments": endpoint})) as app,
    ):
        await _send(
            world,
            sink,
            port,
            [{"filename": "doc.txt", "storage_path": "doc_id=1&v=2"}],
            tenant={"client_base_url": app.url, "client_auth": {"method": "bearer", "token": "t"}},
        )
    [request] = app.hits("/mail-proxy/attachments")
    assert request.method == "POST"
    assert json.loads(request.body) == {"storage_path": "doc_id=1&v=2"}
    assert request.headers["authorization"] == "Bearer t"
    assert _parts(sink) == [("doc.txt", "text/plain", b"content of doc_id=1&v=2")]


async def test_endpoint_without_a_tenant_url_is_an_error(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await _send(world, sink, port, [{"filename": "d.txt", "storage_path": "doc_id=1"}])
    row = await world.message("acme", "m1")
    assert row["error"] == "No default endpoint configured and path doesn't specify one"


async def test_source_4xx_is_permanent(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port, http_server(HttpApp()) as app:
        await _send(world, sink, port, [{"filename": "f.pdf", "storage_path": app.url + "/nope"}])
    row = await world.message("acme", "m1")
    assert (row["state"], row["error"]) == ("error", "Attachment fetch failed for f.pdf: HTTP 404")


async def test_source_5xx_is_retried(world: World) -> None:
    sink = SmtpSink()
    files = HttpApp({"/f.pdf": serving(status=503)})
    async with smtp_server(sink) as port, http_server(files) as app:
        await _send(world, sink, port, [{"filename": "f.pdf", "storage_path": app.url + "/f.pdf"}])
    assert (await world.message("acme", "m1"))["state"] == "deferred"


async def test_slow_source_times_out_and_is_retried(world: World) -> None:
    async def slow(_: Request) -> Response:
        await asyncio.sleep(3)
        return Response(PDF)

    sink = SmtpSink()
    async with smtp_server(sink) as port, http_server(HttpApp({"/f.pdf": slow})) as app:
        await _send(
            world,
            sink,
            port,
            [{"filename": "f.pdf", "storage_path": app.url + "/f.pdf"}],
            attachment_timeout_seconds=0.3,
        )
    row = await world.message("acme", "m1")
    assert row["state"] == "deferred"
    [event] = await world.events("acme", "m1")
    assert event["description"] == "Attachment f.pdf fetch timed out"


async def test_attachment_over_the_size_limit_is_refused(world: World) -> None:
    sink = SmtpSink()
    files = HttpApp({"/big": serving(b"x" * 5000)})
    async with smtp_server(sink) as port, http_server(files) as app:
        await _send(
            world,
            sink,
            port,
            [{"filename": "big.bin", "storage_path": app.url + "/big"}],
            attachment_max_bytes=1000,
        )
    row = await world.message("acme", "m1")
    assert (row["state"], row["error"]) == (
        "error",
        "Attachment big.bin is larger than 1000 bytes",
    )


async def test_message_over_the_total_size_limit_is_refused(world: World) -> None:
    sink = SmtpSink()
    data = "base64:" + base64.b64encode(b"y" * 800).decode()
    async with smtp_server(sink) as port:
        await _send(
            world,
            sink,
            port,
            [{"filename": f"{i}.bin", "storage_path": data} for i in range(3)],
            message_max_bytes=2000,
        )
    row = await world.message("acme", "m1")
    assert row["state"] == "error"
    assert "over the limit of 2000 bytes per message" in row["error"]


async def test_md5_cache_hit_skips_the_fetch(world: World, tmp_path: Path) -> None:
    md5 = hashlib.md5(PDF).hexdigest()
    sink = SmtpSink()
    files = HttpApp({"/f.pdf": serving()})
    async with smtp_server(sink) as port, http_server(files) as app:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        await world.enqueue(
            "acme",
            "smtp1",
            {
                "id": "m1",
                "attachments": [
                    {"filename": "f.pdf", "storage_path": app.url + "/f.pdf", "content_md5": md5}
                ],
            },
        )
        async with running_sender(world, smtp_connections_per_account=1) as ctx:
            await eventually(lambda: _final(world, "m1"))
            await world.enqueue(
                "acme",
                "smtp1",
                {
                    "id": "m2",
                    "attachments": [
                        {
                            "filename": "f_{MD5:" + md5.upper() + "}.pdf",
                            "storage_path": app.url + "/f.pdf",
                        }
                    ],
                },
            )
            await eventually(lambda: _final(world, "m2"))
            assert counter(ctx, "gmp_attachment_cache_total", result="miss") == 1
            assert counter(ctx, "gmp_attachment_cache_total", result="hit") == 1
    assert len(app.hits("/f.pdf")) == 1
    names = [_names(r.data) for r in sink.received]
    assert names == [["f.pdf"], ["f.pdf"]]


async def test_wrong_client_hash_never_hits(world: World) -> None:
    wrong = "0" * 32
    sink = SmtpSink()
    files = HttpApp({"/f.pdf": serving()})
    async with smtp_server(sink) as port, http_server(files) as app:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        attachment = {"filename": "f.pdf", "storage_path": app.url + "/f.pdf", "content_md5": wrong}
        await world.enqueue("acme", "smtp1", {"id": "m1", "attachments": [attachment]})
        async with running_sender(world) as ctx:
            await eventually(lambda: _final(world, "m1"))
            await world.enqueue("acme", "smtp1", {"id": "m2", "attachments": [attachment]})
            await eventually(lambda: _final(world, "m2"))
            assert counter(ctx, "gmp_attachment_cache_total", result="hit") == 0
    assert len(app.hits("/f.pdf")) == 2


async def test_disk_cache_serves_large_items(world: World, tmp_path: Path) -> None:
    big = b"z" * 4096
    md5 = hashlib.md5(big).hexdigest()
    sink = SmtpSink()
    files = HttpApp({"/big": serving(big)})
    async with smtp_server(sink) as port, http_server(files) as app:
        await world.tenant("acme")
        await world.account("acme", "smtp1", port)
        attachment = {"filename": "b.bin", "storage_path": app.url + "/big", "content_md5": md5}
        settings = {"cache_disk_dir": tmp_path / "cache", "cache_disk_threshold_kb": 1}
        await world.enqueue("acme", "smtp1", {"id": "m1", "attachments": [attachment]})
        async with running_sender(world, **settings):
            await eventually(lambda: _final(world, "m1"))
        assert (tmp_path / "cache" / md5[:2] / md5).read_bytes() == big
        # a new process: the memory tier is empty, the disk tier answers
        await world.enqueue("acme", "smtp1", {"id": "m2", "attachments": [attachment]})
        async with running_sender(world, **settings):
            await eventually(lambda: _final(world, "m2"))
    assert len(app.hits("/big")) == 1
    assert len(sink.received) == 2


def _names(data: bytes) -> list[str | None]:
    msg = email.message_from_bytes(data, policy=policy.default)
    return [part.get_filename() for part in msg.iter_attachments()]


async def test_an_attachments_own_sealed_credentials_are_decrypted_for_its_url(
    world: World,
) -> None:
    sink = SmtpSink()
    files = HttpApp({"/f.pdf": serving()})
    sealed = seal_client_auth(world.box, {"method": "bearer", "token": "own-token"})
    assert sealed is not None
    assert sealed["token"].startswith("ENC:")
    async with smtp_server(sink) as port, http_server(files) as app:
        await _send(
            world,
            sink,
            port,
            [{"filename": "f.pdf", "storage_path": app.url + "/f.pdf", "auth": sealed}],
        )
    assert _parts(sink) == [("f.pdf", "application/pdf", PDF)]
    assert app.hits("/f.pdf")[0].headers["authorization"] == "Bearer own-token"
