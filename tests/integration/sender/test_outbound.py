"""The outbound client on real loopback servers: refused by default, allowed when listed,
redirects and DNS answers checked at connect time, errors wrapped, URLs redacted in logs."""

from __future__ import annotations

import gzip
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from mail_proxy.errors import (
    DestinationRefused,
    OutboundError,
    OutboundPermanent,
    OutboundTemporary,
)
from mail_proxy.outbound import OutboundPolicy
from mail_proxy_sender.outbound import OutboundClient
from mail_proxy_sender.outbound.guard import GuardedTransport
from tests.conftest import free_port
from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.servers import HttpApp, SmtpSink, http_server, smtp_server


async def _ok(_: Request) -> Response:
    return Response(b"secret-internal-data")


def _spellings(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/x",
        f"http://127.1:{port}/x",
        f"http://2130706433:{port}/x",
        f"http://0x7f000001:{port}/x",
        f"http://0177.0.0.1:{port}/x",
        f"http://[::ffff:127.0.0.1]:{port}/x",
        f"http://localhost:{port}/x",
        f"http://0.0.0.0:{port}/x",
    ]


async def test_loopback_is_refused_in_every_spelling() -> None:
    app = HttpApp({"/x": _ok})
    async with http_server(app), OutboundClient(OutboundPolicy()) as http:
        for url in _spellings(app.port):
            # refused by the guard, or (0177.0.0.1) already by httpx's URL parser
            with pytest.raises(OutboundPermanent):
                await http.request("GET", url)
    assert app.requests == []


async def test_allow_listed_cidr_and_host_name_are_reached() -> None:
    app = HttpApp({"/x": _ok})
    async with http_server(app):
        async with OutboundClient(OutboundPolicy.parse(["127.0.0.0/8"])) as http:
            response = await http.request("GET", f"{app.url}/x")
            assert response.content == b"secret-internal-data"
        async with OutboundClient(OutboundPolicy.parse(["localhost"])) as http:
            response = await http.request("GET", f"http://localhost:{app.port}/x")
            assert response.status_code == 200
            with pytest.raises(DestinationRefused):
                await http.request("GET", f"{app.url}/x")  # 127.0.0.1 is not "localhost"
    assert len(app.hits("/x")) == 2


async def test_an_answer_longer_than_the_cap_is_refused_without_being_held() -> None:
    async def endless(_: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10_000):  # 640 MB if read to the end
                yield b"x" * 65536

        return StreamingResponse(chunks())

    async def zipped(_: Request) -> Response:
        body = gzip.compress(b'{"ok": true}')
        return Response(body, headers={"Content-Encoding": "gzip"}, media_type="application/json")

    app = HttpApp({"/endless": endless, "/zipped": zipped})
    async with http_server(app), OutboundClient(OutboundPolicy.parse(["127.0.0.0/8"])) as http:
        with pytest.raises(OutboundPermanent, match="longer than 1048576 bytes"):
            await http.request("POST", f"{app.url}/endless")
        # A compressed answer within the cap reads as usual (decoded once).
        assert (await http.request("POST", f"{app.url}/zipped")).json() == {"ok": True}


async def test_a_redirect_to_a_private_address_is_refused() -> None:
    inner = HttpApp({"/x": _ok})
    async with http_server(inner):

        async def bounce(_: Request) -> Response:
            return RedirectResponse(f"{inner.url}/x", status_code=302)

        outer = HttpApp({"/go": bounce})
        async with (
            http_server(outer),
            OutboundClient(OutboundPolicy.parse(["localhost"]), follow_redirects=True) as http,
        ):
            with pytest.raises(DestinationRefused):
                await http.request("GET", f"http://localhost:{outer.port}/go")
        assert len(outer.hits("/go")) == 1
    assert inner.requests == []


async def test_dns_rebinding_is_judged_on_the_answer_used() -> None:
    """A resolver that answers an allowed address, then a private one, for the same name."""
    app = HttpApp({"/x": _ok})
    answers = ["127.0.0.2", "127.0.0.1"]  # only 127.0.0.2 is allowed

    async def rebinding(host: str, port: int) -> list[str]:
        return [answers.pop(0)] if answers else ["10.0.0.1"]

    async with http_server(app):
        # the test server listens on 127.0.0.1 only; 127.0.0.2 is its "public" twin here
        async with OutboundClient(
            OutboundPolicy.parse(["127.0.0.2/32"]), resolver=rebinding
        ) as http:
            with pytest.raises(OutboundTemporary):  # allowed, but nothing listens there
                await http.request("GET", f"http://rebind.test:{app.port}/x")
            with pytest.raises(DestinationRefused):
                await http.request("GET", f"http://rebind.test:{app.port}/x")
    assert app.requests == []


async def test_a_mixed_dns_answer_connects_only_to_the_allowed_address() -> None:
    app = HttpApp({"/x": _ok})

    async def mixed(host: str, port: int) -> list[str]:
        return ["10.0.0.1", "169.254.169.254", "127.0.0.1"]

    async with (
        http_server(app),
        OutboundClient(OutboundPolicy.parse(["127.0.0.1/32"]), resolver=mixed) as http,
    ):
        response = await http.request("GET", f"http://mixed.test:{app.port}/x")
    assert response.status_code == 200


async def _no_dns(host: str, port: int) -> list[str]:
    raise OSError(f"no DNS in this test for {host}")


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://[x/mail-proxy/sync", OutboundError),
        ("http://[::1/x", OutboundError),
        ("ftp://example.org/file", OutboundPermanent),
        ("file:///etc/passwd", OutboundPermanent),
        ("http:///nohost", OutboundPermanent),
        ("http://exa mple.org/", OutboundError),
        ("http://example.org:99999/", OutboundError),
        ("http://\u0000.org/", OutboundError),
        ("http://ex\u00e4mple.org/\u2028", OutboundError),
        ("http://" + "a" * 70 + ".org/", OutboundError),
    ],
)
async def test_unusable_urls_raise_outbound_errors_only(
    url: str, error: type[OutboundError]
) -> None:
    async with OutboundClient(OutboundPolicy(), resolver=_no_dns) as http:
        with pytest.raises(error):
            await http.request("GET", url)


async def test_a_refused_connection_is_temporary() -> None:
    port = free_port()
    async with OutboundClient(OutboundPolicy.parse(["127.0.0.1/32"])) as http:
        with pytest.raises(OutboundTemporary, match="ConnectError"):
            await http.request("GET", f"http://user:pw@127.0.0.1:{port}/x?sig=abc")


async def test_httpx_log_lines_carry_no_url_credentials(caplog: pytest.LogCaptureFixture) -> None:
    app = HttpApp({"/x": _ok})
    caplog.set_level(logging.INFO, logger="httpx")
    async with (
        http_server(app),
        OutboundClient(OutboundPolicy.parse(["127.0.0.1/32"])) as http,
    ):
        await http.request("GET", f"http://alice:hunter2@127.0.0.1:{app.port}/x?X-Sig=s3cr3t")
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines, "httpx logged no request line"
    assert all("hunter2" not in line and "s3cr3t" not in line for line in lines), lines
    assert any("/x?X-Sig=********" in line for line in lines), lines


async def test_an_http_url_attachment_on_loopback_fails_the_message_with_a_reason(
    world: World,
) -> None:
    app = HttpApp({"/x": _ok})
    sink = SmtpSink()
    async with http_server(app), smtp_server(sink) as smtp_port:
        await world.tenant("acme")
        await world.account("acme", "smtp1", smtp_port)
        attachment = {"filename": "a.txt", "storage_path": f"http://127.1:{app.port}/x"}
        redirect = {"filename": "b.txt", "storage_path": f"http://u:pw@localhost:{app.port}/x"}
        await world.enqueue("acme", "smtp1", {"id": "m1", "attachments": [attachment]})
        await world.enqueue("acme", "smtp1", {"id": "m2", "attachments": [redirect]})
        async with running_sender(world, outbound_allow=()):
            await eventually(lambda: _states_are(world, {"m1": "error", "m2": "error"}))
    assert app.requests == []
    assert sink.received == []
    for message_id in ("m1", "m2"):
        row = await world.message("acme", message_id)
        assert "not allowed" in row["error"], row["error"]
        assert "pw@" not in row["error"]


async def test_sync_reports_to_a_private_address_fail_the_tenant_not_the_sender(
    world: World,
) -> None:
    receiver = HttpApp({"/mail-proxy/sync": _ok})
    sink = SmtpSink()
    async with http_server(receiver), smtp_server(sink) as smtp_port:
        await world.tenant("acme", client_base_url=f"http://127.0.0.1:{receiver.port}")
        await world.tenant("other", client_base_url="http://[x")
        # The SMTP sink is reached by an allow-listed name; the receiver's address is not allowed.
        await world.account("acme", "smtp1", smtp_port, host="localhost")
        await world.account("other", "smtp2", smtp_port, host="localhost")
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        await world.enqueue("other", "smtp2", {"id": "m2"})
        async with running_sender(world, outbound_allow=("localhost",)):

            async def both_failed() -> bool:
                rows = await world.fetchval("SELECT count(*) FROM tenants WHERE sync_failures > 0")
                return bool(rows == 2)

            await eventually(both_failed)
            await eventually(lambda: _states_are(world, {"m1": "sent"}))  # the sender goes on
    assert receiver.requests == []
    error = await world.fetchval("SELECT last_sync_error FROM tenants WHERE id = 'acme'")
    assert "not allowed" in error


async def _states_are(world: World, expected: dict[str, str]) -> bool:
    return await world.states("acme") == expected


async def test_the_guard_is_a_public_httpx_transport_and_sees_every_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Plugged in through httpx's public `transport=` only: a plain AsyncClient with it resolves
    through the guard (a name only the guard's resolver knows is reached) and is refused what the
    policy refuses, whatever proxy the environment names."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # would fail if it were used
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    app = HttpApp({"/x": _ok})
    asked: list[str] = []

    async def only_here(host: str, port: int) -> list[str]:
        asked.append(host)
        return {"inside.test": ["127.0.0.1"], "private.test": ["10.0.0.1"]}.get(host, [host])

    transport = GuardedTransport(OutboundPolicy.parse(["127.0.0.1/32"]), resolver=only_here)
    async with http_server(app), httpx.AsyncClient(transport=transport) as client:
        response = await client.get(f"http://inside.test:{app.port}/x")
        assert response.content == b"secret-internal-data"
        with pytest.raises(DestinationRefused):
            await client.get(f"http://private.test:{app.port}/x")
        with pytest.raises(DestinationRefused):
            await client.get(f"http://127.0.0.2:{app.port}/x")
        # Errors of the connection pool arrive as httpx's own types, as with httpx's transport.
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{free_port()}/x")
    assert asked[:3] == ["inside.test", "private.test", "127.0.0.2"]
    assert len(app.hits("/x")) == 1
