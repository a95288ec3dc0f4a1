"""TLS modes and certificate verification (reference section 7.2; verification on by default)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.servers import SmtpSink, smtp_server

pytestmark = pytest.mark.usefixtures("either_exchange")


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def _final_state(world: World) -> str:
    return str((await world.message("acme", "m1"))["state"])


async def _deliver(world: World, port: int, settings: dict[str, object], **account: object) -> str:
    await world.tenant("acme")
    await world.account("acme", "smtp1", port, **account)
    await world.enqueue("acme", "smtp1", {"id": "m1"})
    async with running_sender(world, **settings):
        await eventually(lambda: _is_final(world))
    return await _final_state(world)


async def _is_final(world: World) -> bool:
    return await _final_state(world) in ("sent", "error")


async def test_starttls_with_a_trusted_certificate(
    world: World, ca: trustme.CA, ca_file: Path
) -> None:
    sink = SmtpSink()
    async with smtp_server(sink, starttls=server_context(ca)) as port:
        state = await _deliver(world, port, {"smtp_ca_file": ca_file}, use_tls=True)
    assert state == "sent"
    assert sink.received[0].tls


async def test_implicit_tls_on_an_implicit_tls_port(
    world: World, ca: trustme.CA, ca_file: Path
) -> None:
    sink = SmtpSink()
    async with smtp_server(sink, implicit_tls=server_context(ca)) as port:
        settings = {"smtp_ca_file": ca_file, "smtp_implicit_tls_ports": (port,)}
        state = await _deliver(world, port, settings, use_tls=None)
    assert state == "sent"
    assert sink.received[0].tls


async def test_tls_verify_false_accepts_an_untrusted_certificate(world: World) -> None:
    stranger = trustme.CA()
    sink = SmtpSink()
    async with smtp_server(sink, starttls=server_context(stranger)) as port:
        state = await _deliver(world, port, {}, use_tls=True, tls_verify=False)
    assert state == "sent"
    assert sink.received[0].tls


async def test_opportunistic_starttls_when_use_tls_is_unset(
    world: World, ca: trustme.CA, ca_file: Path
) -> None:
    sink = SmtpSink()
    async with smtp_server(sink, starttls=server_context(ca)) as port:
        state = await _deliver(world, port, {"smtp_ca_file": ca_file}, use_tls=None)
    assert state == "sent"
    assert sink.received[0].tls


async def test_plain_when_use_tls_is_unset_and_the_server_offers_no_tls(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        state = await _deliver(world, port, {}, use_tls=None)
    assert state == "sent"
    assert not sink.received[0].tls


async def test_use_tls_false_never_upgrades(world: World, ca: trustme.CA) -> None:
    sink = SmtpSink()
    async with smtp_server(sink, starttls=server_context(ca)) as port:
        state = await _deliver(world, port, {}, use_tls=False)
    assert state == "sent"
    assert not sink.received[0].tls
