# SPDX-License-Identifier: BUSL-1.1
"""Finding the message a bounce or a PEC receipt is about (issue 11, fixing reference §10).

In order, the first that names a stored message in the mailbox's scope wins:

1. a correlation token in the original's returned headers (`X-Genro-Mail-Token`, or our
   generated `Message-ID`): globally unique, HMAC-checked;
2. `X-Genro-Mail-ID` *and* tenant: the mailbox's tenant, or, for the instance mailbox, the one
   tenant whose recent message with that id went to the bounced address (ambiguous: skipped);
3. the original `Message-ID` given by the client (`payload.message_id`);
4. a VERP token in the bounce's envelope headers, then a token anywhere in the text;
5. the bounced address among the scope's sends of the last `recent_seconds`, newest first.

Scope: a tenant mailbox sees only its tenant; a PEC mailbox only its account's messages; the
instance mailbox every tenant that has no bounce mailbox of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from mail_proxy.inbound.correlation import find_tokens


@dataclass(frozen=True)
class Scope:
    tenant_id: str | None = None  # None: every tenant without its own bounce mailbox
    account_pk: int | None = None  # PEC: only this account's messages


@dataclass(frozen=True)
class Clues:
    original: str = ""  # the original's headers as returned
    mail_ids: Sequence[str] = ()
    message_ids: Sequence[str] = ()
    envelope: str = ""
    text: str = ""
    recipient: str | None = None


@dataclass(frozen=True)
class Found:
    message_pk: int
    tenant_id: str
    message_id: str
    method: str  # token | mail_id | message_id | verp | recipient


_IN_SCOPE = """
  AND ($2::text IS NULL OR m.tenant_id = $2)
  AND ($3::bigint IS NULL OR m.account_pk = $3)
  AND ($2::text IS NOT NULL OR $3::bigint IS NOT NULL OR NOT EXISTS (
        SELECT 1 FROM tenants t WHERE t.id = m.tenant_id
          AND coalesce((t.bounce_config->>'enabled')::boolean, false)))
"""
_BY_PKS = f"""
SELECT m.pk, m.tenant_id, m.id FROM unnest($1::bigint[]) WITH ORDINALITY AS q(pk, ord)
JOIN messages m ON m.pk = q.pk
WHERE true {_IN_SCOPE}
ORDER BY q.ord LIMIT 1
"""
# The recipient check of step 2 and 5: does the payload's to/cc/bcc hold the address?
_SENT_TO = """
EXISTS (SELECT 1 FROM jsonb_array_elements_text(
            coalesce(m.payload->'to', '[]') || coalesce(m.payload->'cc', '[]')
            || coalesce(m.payload->'bcc', '[]')) AS r(value)
        WHERE lower(r.value) = $5 OR lower(r.value) LIKE '%<' || $5 || '>')
"""
_BY_MAIL_ID = f"""
SELECT m.pk, m.tenant_id, m.id, ($5::text IS NOT NULL AND {_SENT_TO}) AS to_recipient
FROM messages m
WHERE m.id = ANY($1::text[]) AND m.state IN ('sent', 'error', 'sending', 'deferred')
  {_IN_SCOPE}
  AND ($4::bigint IS NULL OR m.smtp_ts IS NULL OR m.smtp_ts >= $4)
ORDER BY m.pk DESC
LIMIT 20
"""
_BY_MESSAGE_ID = f"""
SELECT m.pk, m.tenant_id, m.id FROM messages m
WHERE m.payload->>'message_id' = ANY($1::text[]) {_IN_SCOPE}
  AND ($4::bigint IS NULL OR m.smtp_ts >= $4)
ORDER BY m.pk DESC LIMIT 1
"""
_BY_RECIPIENT = f"""
SELECT m.pk, m.tenant_id, m.id FROM messages m
WHERE m.state = 'sent' AND m.smtp_ts >= $4 AND $1::text IS NULL {_IN_SCOPE}
  AND {_SENT_TO}
ORDER BY m.smtp_ts DESC, m.pk DESC LIMIT 1
"""


def _found(row: asyncpg.Record | None, method: str) -> Found | None:
    return None if row is None else Found(row["pk"], row["tenant_id"], row["id"], method)


async def _by_tokens(
    conn: asyncpg.Connection, secret: str, text: str, scope: Scope, method: str
) -> Found | None:
    pks = find_tokens(secret, text) if text else []
    if not pks:
        return None
    row = await conn.fetchrow(_BY_PKS, pks, scope.tenant_id, scope.account_pk)
    return _found(row, method)


async def find_message(
    conn: asyncpg.Connection,
    *,
    secret: str,
    scope: Scope,
    clues: Clues,
    now_ts: int,
    recent_seconds: int,
) -> Found | None:
    """The stored message these clues point at, or None (see the module docstring)."""
    args = (scope.tenant_id, scope.account_pk)
    since = now_ts - recent_seconds
    found = await _by_tokens(conn, secret, clues.original, scope, "token")
    if found:
        return found
    recipient = clues.recipient.lower() if clues.recipient else None
    if clues.mail_ids:
        rows = await conn.fetch(_BY_MAIL_ID, list(clues.mail_ids), *args, None, recipient)
        tenants = {row["tenant_id"] for row in rows}
        if len(tenants) > 1:  # the same id in several tenants: only the recipient can tell
            rows = [row for row in rows if row["to_recipient"]]
            tenants = {row["tenant_id"] for row in rows}
        if len(tenants) == 1:
            return _found(rows[0], "mail_id")
    if clues.message_ids:
        row = await conn.fetchrow(_BY_MESSAGE_ID, list(clues.message_ids), *args, None)
        if row is not None:
            return _found(row, "message_id")
    found = await _by_tokens(conn, secret, clues.envelope, scope, "verp")
    if found:
        return found
    found = await _by_tokens(conn, secret, clues.text, scope, "token")
    if found:
        return found
    if recipient:
        row = await conn.fetchrow(_BY_RECIPIENT, None, *args, since, recipient)
        return _found(row, "recipient")
    return None
