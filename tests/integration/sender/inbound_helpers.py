"""Shared steps of the inbound tests: mailboxes on the real Dovecot, what the sink received."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.sender.conftest import World
from tests.integration.sender.dovecot import PASSWORD, Dovecot
from tests.integration.sender.servers import SmtpSink

# Fast pollers for tests: a poll every second, mailbox list re-read every second.
INBOUND_FAST = {"inbound_refresh_seconds": 1.0, "imap_timeout_seconds": 5.0}


async def instance_mailbox(
    world: World,
    server: Dovecot,
    user: str = "bounces",
    *,
    poll: int = 1,
    action: str = "keep",
    folder: str | None = None,
    security: str = "plain",
    enabled: bool = True,
) -> None:
    await world.execute(
        "UPDATE instance SET bounce_enabled = $1, bounce_imap_host = $2, bounce_imap_port = $3, "
        "bounce_imap_user = $4, bounce_imap_password = $5, bounce_imap_ssl = $6, "
        "bounce_imap_starttls = $7, bounce_poll_interval = $8, bounce_processed_action = $9, "
        "bounce_processed_folder = $10, bounce_return_path = 'bounces@example.net'",
        enabled,
        server.host,
        server.ssl_port if security == "ssl" else server.port,
        user,
        world.box.encrypt(PASSWORD),
        security == "ssl",
        security == "starttls",
        poll,
        action,
        folder,
    )


async def tenant_mailbox(
    world: World, tenant_id: str, server: Dovecot, user: str, **extra: Any
) -> None:
    config = {
        "enabled": True,
        "imap_host": server.host,
        "imap_port": server.port,
        "imap_user": user,
        "imap_password": world.box.encrypt(PASSWORD),
        "imap_ssl": False,
        "poll_interval": 1,
        **extra,
    }
    await world.execute(
        "UPDATE tenants SET bounce_config = $2::text::jsonb WHERE id = $1",
        tenant_id,
        json.dumps(config),
    )


def quoted_headers(sink: SmtpSink, mail_id: str, tenant_rcpt: str | None = None) -> str:
    """The header block of the message the sink received with this X-Genro-Mail-ID."""
    for received in sink.received:
        if received.mail_id == mail_id and (
            tenant_rcpt is None or tenant_rcpt in received.rcpt_tos
        ):
            head = received.data.split(b"\r\n\r\n", 1)[0].decode()
            return head + "\r\n"
    raise AssertionError(f"{mail_id} was not sent")


def envelope_sender(sink: SmtpSink, mail_id: str) -> str:
    return next(r.mail_from for r in sink.received if r.mail_id == mail_id)


async def bounce_events(world: World, tenant_id: str | None = None) -> list[dict[str, Any]]:
    async with world.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT tenant_id, message_id, description, metadata FROM message_events "
            "WHERE event_type = 'bounce' AND ($1::text IS NULL OR tenant_id = $1) ORDER BY id",
            tenant_id,
        )
    out = []
    for row in rows:
        meta = row["metadata"]
        meta = json.loads(meta) if isinstance(meta, str) else meta
        out.append({**dict(row), "metadata": meta})
    return out
