# SPDX-License-Identifier: BUSL-1.1
"""A bounce's mark on the bounced recipient's outcome (`message_recipients`, SPEC section 13).

A DSN or a provider's bounce says that one recipient the relay had accepted was not
delivered after all. `mark_bounced` turns that recipient's outcome from `accepted` into
`refused`, so `GET /messages`, `GET /messages/{id}/events` and later report items show
*which* recipient bounced:

- `code`: the SMTP reply code quoted in the bounce reason (`550 5.1.1 ...` -> 550), else null
  (the bounce's own `bounce_code`, e.g. "511" for status 5.1.1, is not a reply code);
- `reason`: `"<label>: <reason>"`, the label saying what refused it later: `hard bounce`,
  `soft bounce`, or a PEC error receipt (`PEC mancata_consegna`...): the prefix tells a later
  refusal from one during the SMTP transaction.

A message whose recipients all accepted has no rows (see `mail_proxy.db.recipients`): they
are written now, every other recipient `accepted`, the bounced one `refused`. Only accepted
recipients change: a recipient already refused keeps its first reason, a deferred one is still
being retried by the sender and its own outcome will follow. A bounce naming an address that
is not a recipient of the message (an alias that forwarded, a correlation by token only)
changes nothing. Warnings (`Action: delayed`) and complaints (the mail *was* delivered) never
come here.

`mark_bounced` returns the message's recipient list in the wire shape
(`[{"address", "status", "code", "reason"}]`) when the message has more than one recipient,
for the `bounce` event's metadata (and so its report item and webhook); for a one-recipient
message it returns None and the bounce item stays exactly the v0.6 one (reference 5.2).
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from mail_proxy.addresses import normalised_address, submitted_forms
from mail_proxy.db.recipients import for_messages, wire_list

_REPLY_CODE = re.compile(r"(?<![\d.])([45]\d\d)(?![\d.])")
_MESSAGE = "SELECT state, payload FROM messages WHERE pk = $1 AND tenant_id = $2"
_MARK = """
UPDATE message_recipients
SET status = 'refused', code = $3, reason = $4, next_attempt_ts = NULL, updated_ts = $5
WHERE message_pk = $1 AND lower(address) = $2 AND status = 'accepted'
"""
_WRITE_ALL = """
INSERT INTO message_recipients AS r
    (message_pk, address, status, code, reason, attempts, next_attempt_ts, updated_ts,
     submitted)
SELECT $1, i.address,
       CASE WHEN lower(i.address) = $2 THEN 'refused' ELSE 'accepted' END,
       CASE WHEN lower(i.address) = $2 THEN $3::int END,
       CASE WHEN lower(i.address) = $2 THEN $4::text END,
       1, NULL, $5, i.submitted
FROM unnest($6::text[], $7::text[]) AS i(address, submitted)
ON CONFLICT (message_pk, address) DO UPDATE SET
    status = 'refused', code = EXCLUDED.code, reason = EXCLUDED.reason,
    updated_ts = EXCLUDED.updated_ts
WHERE r.status = 'accepted' AND EXCLUDED.status = 'refused'
"""


def reply_code(reason: str | None) -> int | None:
    """The first SMTP reply code (4xx/5xx, RFC 5321 section 4.2) quoted in `reason`."""
    match = _REPLY_CODE.search(reason or "")
    return int(match[1]) if match else None


async def mark_bounced(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    message_pk: int,
    address: str,
    label: str,
    reason: str | None,
    now: int,
) -> list[dict[str, Any]] | None:
    """Record that `address` was refused after acceptance (`label`: what said so, e.g.
    `hard bounce`); see the module docstring."""
    message = await conn.fetchrow(_MESSAGE, message_pk, tenant_id)
    if message is None:
        return None
    payload = message["payload"] if isinstance(message["payload"], dict) else {}
    forms = submitted_forms(payload.get("to"), payload.get("cc"), payload.get("bcc"))
    key = (normalised_address(address) or address.strip()).lower()
    if key in {k.lower() for k in forms}:
        code = reply_code(reason)
        shown = f"{label}: {reason}" if reason else label
        existing = (await for_messages(conn, message_pks=[message_pk])).get(message_pk)
        if existing:
            await conn.execute(_MARK, message_pk, key, code, shown, now)
        elif message["state"] == "sent":
            await conn.execute(
                _WRITE_ALL, message_pk, key, code, shown, now, list(forms), list(forms.values())
            )
    if len(forms) <= 1:
        return None
    rows = (await for_messages(conn, message_pks=[message_pk])).get(message_pk)
    return wire_list(rows) if rows else None
