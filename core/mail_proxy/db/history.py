# SPDX-License-Identifier: Apache-2.0
"""One message's history for `GET /messages/{id}/events` (SPEC section 13).

The history is the message's arrival (`queued`, from the row itself: storing an event per
enqueued message would double the cost of the hot path and change what the v0.6 sync protocol
reports) followed by every stored event in the order it was written: `deferred` with its
reason, `sent`, `error`, `bounce`, `pec_*`, and whatever else the service records; then each
recipient's latest outcome (`message_recipients`: accepted / refused / deferred with code and
reason), present when some recipient did not accept at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from mail_proxy.db.recipients import for_messages, wire_list

_MESSAGE = """
SELECT pk, id, tenant_id, state, extract(epoch FROM created_at)::bigint AS created_ts
FROM messages WHERE tenant_id = $1 AND id = $2
"""
_EVENTS = """
SELECT id, event_type, event_ts, description, metadata, reported_ts
FROM message_events WHERE message_pk = $1 ORDER BY id
"""


@dataclass(frozen=True)
class HistoryEvent:
    event_id: int | None  # None for `queued`, which is not a stored event
    event_type: str
    event_ts: int
    description: str | None
    metadata: dict[str, Any] | None
    reported_ts: int | None


@dataclass(frozen=True)
class MessageHistory:
    id: str
    tenant_id: str
    state: str
    events: list[HistoryEvent]
    recipients: list[dict[str, Any]]  # [{"address", "status", "code", "reason"}], maybe empty


async def message_history(
    conn: asyncpg.Connection, *, tenant_id: str, message_id: str
) -> MessageHistory | None:
    """The tenant's message and its events, oldest first; None when the tenant has no such id."""
    message = await conn.fetchrow(_MESSAGE, tenant_id, message_id)
    if message is None:
        return None
    events = [HistoryEvent(None, "queued", message["created_ts"], None, None, None)]
    for row in await conn.fetch(_EVENTS, message["pk"]):
        events.append(
            HistoryEvent(
                event_id=row["id"],
                event_type=row["event_type"],
                event_ts=row["event_ts"],
                description=row["description"],
                metadata=row["metadata"],
                reported_ts=row["reported_ts"],
            )
        )
    recipients = (await for_messages(conn, message_pks=[message["pk"]])).get(message["pk"], [])
    return MessageHistory(
        message["id"], message["tenant_id"], message["state"], events, wire_list(recipients)
    )
