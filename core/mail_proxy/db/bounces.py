# SPDX-License-Identifier: BUSL-1.1
"""Recording a bounce: the `bounce` event, the bounce log, and the suppression decision.

`record_bounce` is the one entry point for every source of bounces: the IMAP bounce poller
and provider webhooks (SES, SendGrid, Mailgun, Postmark). The caller owns the transaction.

Policy (reference section 10, extended):
- a hard bounce suppresses the address for the tenant at once;
- a soft bounce is logged; `soft_limit` soft bounces of one address within
  `soft_window_seconds` suppress it too;
- a warning (DSN `Action: delayed`) is reported as a soft bounce but is not a failure: it never
  counts towards suppression.

The reported item is exactly the reference's: `{"id", "bounce_ts", "bounce_type",
"bounce_code", "bounce_reason"}` (section 5.2); the event's metadata keeps the recipient and
the source as well. A failure (not a warning, not a complaint) also marks the bounced
recipient `refused` in the message's recipient outcomes (`mail_proxy.db.bounced_recipients`);
when the message has several recipients the event's metadata carries their list, so the
report item, webhooks and the history show which one bounced (SPEC section 13 `recipients`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import asyncpg

from mail_proxy.db import storable
from mail_proxy.db.bounced_recipients import mark_bounced
from mail_proxy.db.suppressions import (
    SOURCE_HARD_BOUNCE,
    SOURCE_SOFT_BOUNCES,
    add_suppression,
    normalise,
)

BounceType = Literal["hard", "soft"]
_REASON_MAX = 500  # the reference cut reasons to 500 characters


@dataclass(frozen=True)
class SuppressionPolicy:
    """When bounces put an address on the suppression list."""

    soft_limit: int = 3
    soft_window_seconds: float = 7 * 86400


@dataclass(frozen=True)
class Bounce:
    """One bounced recipient of one message.

    `message_pk` is None when the bounce could not be tied to a stored message (a provider
    webhook about a message already purged): the log and the suppression list still learn it.
    `source` names where it came from: `imap`, `ses`, `sendgrid`, `mailgun`, `postmark`...
    `complaint`: the recipient reported the mail as spam (it was delivered): suppressed and
    reported, but the recipient's delivery outcome stays `accepted`.
    """

    tenant_id: str
    address: str
    bounce_type: BounceType
    code: str | None
    reason: str | None
    event_ts: int
    source: str
    message_pk: int | None = None
    warning: bool = False
    complaint: bool = False


@dataclass(frozen=True)
class BounceRecorded:
    event_id: int | None  # None: no message to attach an event to
    message_id: str | None  # the client's id of that message
    suppressed: bool  # the address was put on the list by this bounce


_EVENT = """
INSERT INTO message_events (message_pk, tenant_id, message_id, event_type, event_ts,
                            description, metadata)
SELECT m.pk, m.tenant_id, m.id, 'bounce', $3, $4, $5::text::jsonb
FROM messages m WHERE m.pk = $1 AND m.tenant_id = $2
RETURNING id, message_id
"""
_LOG = """
INSERT INTO bounce_log (tenant_id, address, bounce_type, bounce_code, message_pk, source)
VALUES ($1, $2, $3, $4, $5, $6)
"""
_SOFT_COUNT = """
SELECT count(*) FROM bounce_log
WHERE tenant_id = $1 AND address = $2 AND bounce_type = 'soft'
  AND bounced_at > now() - make_interval(secs => $3)
"""


async def record_bounce(
    conn: asyncpg.Connection, *, bounce: Bounce, policy: SuppressionPolicy
) -> BounceRecorded:
    """Record one bounced recipient; see the module docstring for the policy."""
    address = storable.text(normalise(bounce.address))
    # Written by whoever sent the DSN: stored as Postgres can (`storable`).
    reason = storable.optional_text((bounce.reason or "")[:_REASON_MAX] or None)
    event_id: int | None = None
    message_id: str | None = None
    if bounce.message_pk is not None:
        metadata: dict[str, object] = {
            "bounce_type": bounce.bounce_type,
            "bounce_code": bounce.code,
            "recipient": address,
            "source": bounce.source,
        }
        if bounce.warning:
            metadata["warning"] = True
        else:
            recipients = None
            if not bounce.complaint:
                recipients = await mark_bounced(
                    conn,
                    tenant_id=bounce.tenant_id,
                    message_pk=bounce.message_pk,
                    address=address,
                    label=f"{bounce.bounce_type} bounce",
                    reason=reason,
                    now=bounce.event_ts,
                )
            if recipients:
                metadata["recipients"] = recipients
        row = await conn.fetchrow(
            _EVENT,
            bounce.message_pk,
            bounce.tenant_id,
            bounce.event_ts,
            reason,
            json.dumps(storable.json_value(metadata)),
        )
        if row is not None:
            event_id, message_id = row["id"], row["message_id"]
    if bounce.warning:
        return BounceRecorded(event_id, message_id, suppressed=False)
    await conn.execute(
        _LOG,
        bounce.tenant_id,
        address,
        bounce.bounce_type,
        bounce.code,
        bounce.message_pk,
        bounce.source,
    )
    if bounce.bounce_type == "hard":
        source = SOURCE_HARD_BOUNCE
    else:
        recent = await conn.fetchval(
            _SOFT_COUNT, bounce.tenant_id, address, float(policy.soft_window_seconds)
        )
        if recent < policy.soft_limit:
            return BounceRecorded(event_id, message_id, suppressed=False)
        source = SOURCE_SOFT_BOUNCES
    suppressed = await add_suppression(
        conn,
        tenant_id=bounce.tenant_id,
        address=address,
        reason=reason or f"{bounce.bounce_type} bounce",
        source=source,
        message_id=message_id,
        bounce_code=bounce.code,
    )
    return BounceRecorded(event_id, message_id, suppressed=suppressed)


async def purge_bounce_log(conn: asyncpg.Connection, *, older_than_seconds: float) -> int:
    """Forget bounces older than the soft-bounce window (they no longer count)."""
    status: str = await conn.execute(
        "DELETE FROM bounce_log WHERE bounced_at < now() - make_interval(secs => $1)",
        float(older_than_seconds),
    )
    return int(status.split()[-1])
