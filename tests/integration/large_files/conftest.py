"""Large files end to end: a sender (with its SMTP sink) and an API serving the links, on one
test database, with `file://` storage in the test's folder or S3 on a loopback moto server."""

from __future__ import annotations

import base64
import contextlib
import email
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from mail_proxy.config import Settings
from mail_proxy.db.pool import create_pool
from mail_proxy.encryption import SecretBox, decode_key, generate_key
from mail_proxy.metrics import Metrics
from mail_proxy_api.app import create_app
from mail_proxy_api.context import ApiContext
from tests.conftest import free_port, serving
from tests.integration.api.conftest import Api, running_api
from tests.integration.sender.conftest import World, eventually, running_sender, world
from tests.integration.sender.servers import SmtpSink, smtp_server

__all__ = ["world"]  # the sender tests' fixture, used here too

SECRET = b"test-download-secret-0123456789-abcdef"
# A link in the text footer (`  - name (x MB): URL`) or the HTML one (`<a href="URL">`).
LINK = re.compile(r"(?:\): |href=\")(https?://[^\s\"<>]+)")


def b64(data: bytes) -> str:
    return "base64:" + base64.b64encode(data).decode()


@dataclass
class Offload:
    world: World
    api: Api
    store: Path

    @property
    def base_url(self) -> str:
        return str(self.api.client.base_url).rstrip("/")

    async def tenant(self, **config: Any) -> None:
        config = {
            "enabled": True,
            "max_size_mb": 0.1,
            "storage_url": f"file://{self.store}",
            "public_base_url": self.base_url,
            "action": "rewrite",
            **config,
        }
        await self.world.tenant("acme", large_file_config=config)

    async def send(
        self,
        attachments: list[dict[str, Any]],
        *,
        sink: SmtpSink | None = None,
        message: dict[str, Any] | None = None,
        secret: bytes | None = SECRET,
        **settings: Any,
    ) -> tuple[SmtpSink, Any]:
        """Send one message `m1` through a real sender; the sink and the sender's context."""
        sink = sink or SmtpSink()
        async with smtp_server(sink) as port:
            # By name: tests that refuse loopback allow "localhost" to keep the sink reachable.
            await self.world.account("acme", "smtp1", port, host="localhost")
            await self.world.enqueue(
                "acme", "smtp1", {"id": "m1", "attachments": attachments, **(message or {})}
            )
            async with running_sender(self.world, download_secret=secret, **settings) as ctx:
                await eventually(self.final)
        return sink, ctx

    async def final(self) -> bool:
        state = (await self.world.message("acme", "m1"))["state"]
        return bool(state in ("sent", "error", "deferred"))


@contextlib.asynccontextmanager
async def another_api_pod(dsn: str, secret: bytes) -> AsyncIterator[httpx.AsyncClient]:
    """One more API server on the same database (what a second pod is), its client."""
    pool = await create_pool(dsn, max_size=2)
    ctx = ApiContext(
        settings=Settings(),
        pool=pool,
        box=SecretBox(None),
        metrics=Metrics(),
        download_secret=secret,
    )
    try:
        async with (
            serving(create_app(ctx)) as port,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
        ):
            yield client
    finally:
        await pool.close()


@pytest.fixture
async def offload(world: World, tmp_path: Path) -> AsyncIterator[Offload]:
    async with running_api(
        world.dsn, key=decode_key(generate_key()), download_secret=SECRET
    ) as api:
        yield Offload(world, api, tmp_path / "store")


def received(sink: SmtpSink, index: int = 0) -> EmailMessage:
    msg = email.message_from_bytes(sink.received[index].data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def body_text(msg: EmailMessage, subtype: str = "plain") -> str:
    part = msg.get_body(preferencelist=(subtype,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def links(text: str) -> list[str]:
    return LINK.findall(text)


@dataclass
class S3Server:
    """A moto S3 server on 127.0.0.1: its URL and the fsspec options that reach it."""

    endpoint_url: str

    @property
    def options(self) -> dict[str, dict[str, Any]]:
        return {
            "s3": {
                "key": "testing",
                "secret": "testing",
                "endpoint_url": self.endpoint_url,
                "client_kwargs": {"region_name": "us-east-1"},
            }
        }


@pytest.fixture(scope="module")
def moto_server() -> Iterator[S3Server]:
    """`moto_server` (moto[server]) in its own process on a free loopback port, stopped after
    the module (starting one costs seconds; `moto_s3` empties it for each test)."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(url + "/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None:
                    pytest.fail("moto_server exited at start")
                time.sleep(0.05)
        else:
            pytest.fail("moto_server did not start")
        yield S3Server(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def moto_s3(moto_server: S3Server) -> S3Server:
    """The module's moto server, emptied: no bucket or object of an earlier test remains."""
    httpx.post(moto_server.endpoint_url + "/moto-api/reset", timeout=10).raise_for_status()
    return moto_server
