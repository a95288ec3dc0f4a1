# SPDX-License-Identifier: BUSL-1.1
"""Provider feedback: each tenant's provider settings, and applying verified notifications.

Settings (`provider_feedback.config`, secrets sealed in the `client_auth` shape so key rotation
covers them: `token`, `password`):

    ses       {"topic_arns": [...]}                 SNS topics whose messages are accepted
    sendgrid  {"public_key": "<base64 DER>"}        the Event Webhook verification key
    mailgun   {"token": "ENC:..."}                  the webhook signing key
    postmark  {"user", "password": "ENC:..."} and/or {"token": "ENC:..."}

Applying a `FeedbackEvent`: find the original message of the tenant (our correlation token in
any reference, then `X-Genro-Mail-ID`, then the client's own Message-ID), then
`mail_proxy.db.bounces.record_bounce`, the one entry point the IMAP poller uses too: the same
`bounce` event and suppression rules. A complaint puts the address on the suppression list
(source `complaint`) and is reported as a hard bounce. A notification seen before (providers
retry) is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from mail_proxy.db.bounces import Bounce, SuppressionPolicy, record_bounce
from mail_proxy.db.suppressions import add_suppression
from mail_proxy.feedback.events import FeedbackEvent
from mail_proxy.inbound.correlation import find_tokens

SOURCE_COMPLAINT = "complaint"

_GET = "SELECT config FROM provider_feedback WHERE tenant_id = $1 AND provider = $2"
_LIST = """
SELECT provider, config, updated_at FROM provider_feedback WHERE tenant_id = $1 ORDER BY provider
"""
_PUT = """
INSERT INTO provider_feedback (tenant_id, provider, config) VALUES ($1, $2, $3)
ON CONFLICT (tenant_id, provider) DO UPDATE SET config = EXCLUDED.config, updated_at = now()
"""
_DELETE = "DELETE FROM provider_feedback WHERE tenant_id = $1 AND provider = $2"
_SEEN = """
INSERT INTO provider_feedback_seen (tenant_id, provider, event_key) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING RETURNING true
"""
_PURGE_SEEN = """
DELETE FROM provider_feedback_seen WHERE ctid IN (
    SELECT ctid FROM provider_feedback_seen WHERE seen_at < to_timestamp($1) LIMIT $2)
"""
_BY_PK = "SELECT pk FROM messages WHERE tenant_id = $1 AND pk = ANY($2::bigint[]) ORDER BY pk"
_BY_ID = "SELECT pk FROM messages WHERE tenant_id = $1 AND id = ANY($2::text[]) ORDER BY pk"
_BY_MESSAGE_ID = """
SELECT pk FROM messages
WHERE tenant_id = $1 AND payload ? 'message_id' AND payload ->> 'message_id' = ANY($2::text[])
ORDER BY pk DESC
"""


@dataclass(frozen=True)
class Applied:
    recorded: int = 0  # events applied (bounce recorded, suppression decided)
    correlated: int = 0  # of those, tied to a stored message (a `bounce` event was stored)
    duplicates: int = 0  # seen before, skipped


async def get_config(
    conn: asyncpg.Connection, *, tenant_id: str, provider: str
) -> dict[str, Any] | None:
    config: dict[str, Any] | None = await conn.fetchval(_GET, tenant_id, provider)
    return config


async def list_configs(conn: asyncpg.Connection, *, tenant_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(_LIST, tenant_id)
    return rows


async def put_config(
    conn: asyncpg.Connection, *, tenant_id: str, provider: str, config: dict[str, Any]
) -> None:
    """Store a provider's settings (secrets already sealed)."""
    await conn.execute(_PUT, tenant_id, provider, config)


async def delete_config(conn: asyncpg.Connection, *, tenant_id: str, provider: str) -> bool:
    status: str = await conn.execute(_DELETE, tenant_id, provider)
    return status.split()[-1] != "0"


def _with_and_without_brackets(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        bare = value.strip().strip("<>")
        out += [bare, f"<{bare}>"]
    return out


async def find_message(
    conn: asyncpg.Connection, *, tenant_id: str, event: FeedbackEvent, correlation_secret: str
) -> int | None:
    """The pk of the tenant's message the event is about, or None."""
    pks: list[int] = []
    for reference in event.references:
        pks += find_tokens(correlation_secret, reference)
    if pks:
        pk: int | None = await conn.fetchval(_BY_PK, tenant_id, pks)
        if pk is not None:
            return pk
    if event.mail_ids:
        pk = await conn.fetchval(_BY_ID, tenant_id, event.mail_ids)
        if pk is not None:
            return pk
    if event.message_ids:
        pk = await conn.fetchval(
            _BY_MESSAGE_ID, tenant_id, _with_and_without_brackets(event.message_ids)
        )
        if pk is not None:
            return pk
    return None


async def apply_events(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    provider: str,
    events: list[FeedbackEvent],
    policy: SuppressionPolicy,
) -> Applied:
    """Record verified events as bounces (and complaints as suppressions), once each.

    The caller owns the transaction: a failure records none of them, and the provider retries.
    """
    secret: str = await conn.fetchval("SELECT correlation_secret FROM instance WHERE id = 1")
    recorded = correlated = duplicates = 0
    for event in events:
        key = f"{event.provider_event_id or ''}:{event.kind}:{event.recipient.lower()}"
        if event.provider_event_id and not await conn.fetchval(_SEEN, tenant_id, provider, key):
            duplicates += 1
            continue
        message_pk = await find_message(
            conn, tenant_id=tenant_id, event=event, correlation_secret=secret
        )
        if event.kind == "complaint":
            await add_suppression(
                conn,
                tenant_id=tenant_id,
                address=event.recipient,
                reason=event.reason or "spam complaint",
                source=SOURCE_COMPLAINT,
            )
        done = await record_bounce(
            conn,
            bounce=Bounce(
                tenant_id=tenant_id,
                address=event.recipient,
                bounce_type=event.bounce_type,
                code=event.code,
                reason=event.reason,
                event_ts=event.event_ts,
                source=provider if event.kind == "bounce" else f"{provider}_complaint",
                message_pk=message_pk,
                complaint=event.kind == "complaint",
            ),
            policy=policy,
        )
        recorded += 1
        correlated += done.event_id is not None
    return Applied(recorded, correlated, duplicates)


async def first_use(conn: asyncpg.Connection, *, tenant_id: str, provider: str, key: str) -> bool:
    """True the first time `key` is seen for (tenant, provider) (kept like applied events,
    until `purge_seen`); in the caller's transaction, so a rolled-back use does not count."""
    return bool(await conn.fetchval(_SEEN, tenant_id, provider, key))


async def purge_seen(conn: asyncpg.Connection, *, before: float, batch: int) -> int:
    """Forget notifications applied before `before` (epoch seconds), `batch` at a time."""
    status: str = await conn.execute(_PURGE_SEEN, before, batch)
    return int(status.split()[-1])
