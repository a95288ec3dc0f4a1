"""What the sender puts on the wire so bounces come back to us and name their message."""

from __future__ import annotations

import email
import json
from email import policy

from mail_proxy.inbound.correlation import find_tokens
from tests.integration.sender.conftest import World, eventually, running_sender
from tests.integration.sender.servers import SmtpSink, smtp_server


async def _sent(world: World, tenant_id: str, message_id: str) -> bool:
    return (await world.message(tenant_id, message_id))["state"] == "sent"


async def test_token_return_path_and_suppressed_recipients_on_the_wire(world: World) -> None:
    sink = SmtpSink()
    async with smtp_server(sink) as port:
        await world.tenant("acme")
        await world.tenant("verp")
        await world.execute(
            "UPDATE tenants SET bounce_config = $1::text::jsonb WHERE id = 'verp'",
            json.dumps({"return_path": "b@verp.example", "verp": True}),
        )
        await world.account("acme", "smtp1", port)
        await world.account("verp", "smtp1", port)
        await world.execute("UPDATE instance SET bounce_return_path = 'bounces@example.net'")
        await world.enqueue("acme", "smtp1", {"id": "m1"})
        await world.enqueue(
            "acme",
            "smtp1",
            {
                "id": "m2",
                "return_path": "own@example.org",
                "to": ["ok@example.org"],
                "cc": ["gone@example.org"],
                "suppressed_recipients": ["gone@example.org"],
            },
        )
        await world.enqueue("verp", "smtp1", {"id": "m1"})
        async with running_sender(world):
            for tenant_id, message_id in (("acme", "m1"), ("acme", "m2"), ("verp", "m1")):
                await eventually(lambda t=tenant_id, m=message_id: _sent(world, t, m))

    secret = await world.fetchval("SELECT correlation_secret FROM instance")
    by_key = {}
    for received in sink.received:
        msg = email.message_from_bytes(received.data, policy=policy.default)
        by_key[(msg["X-Genro-Mail-ID"], received.mail_from)] = (received, msg)

    acme_m1 = await world.message("acme", "m1")
    received, msg = by_key[("m1", "bounces@example.net")]
    assert find_tokens(secret, msg["X-Genro-Mail-Token"]) == [acme_m1["pk"]]
    assert find_tokens(secret, msg["Message-ID"]) == [acme_m1["pk"]]

    received, msg = by_key[("m2", "own@example.org")]  # the client's return_path wins
    assert received.rcpt_tos == ["ok@example.org"]
    assert msg["Cc"] == "gone@example.org"  # the header is the client's; the envelope is ours
    [sent] = [e for e in await world.events("acme", "m2") if e["event_type"] == "sent"]
    metadata = sent["metadata"]
    metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
    assert metadata["refused"] == {"gone@example.org": "recipient suppressed"}

    verp_m1 = await world.message("verp", "m1")
    [(received, msg)] = [v for k, v in by_key.items() if k[1].startswith("b+")]
    assert received.mail_from.endswith("@verp.example")
    assert find_tokens(secret, received.mail_from) == [verp_m1["pk"]]
