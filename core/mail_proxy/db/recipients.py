# SPDX-License-Identifier: Apache-2.0
"""Per-recipient outcomes (`message_recipients`; SPEC section 13, issue 10).

Every recipient of a message ends `accepted`, `refused` (final: 5xx at RCPT/DATA, retries
given up, or refused at intake such as `recipient suppressed`) or `deferred` (4xx: retried
alone, never re-sending to those who accepted). Rows exist only for messages whose recipients
did not all accept at once: a message without rows had every recipient accepted (or was not
tried yet), and its report item stays exactly the v0.6 one.

Surface (all keyword-only, the caller owns the transaction):
- `record(conn, rows=[RecipientRow, ...], now=...)`: upsert outcomes for any messages; a
  refusal or acceptance is final and is never overwritten by a later `deferred`.
- `record_suppressed(conn, messages=[(tenant_id, id, {address: submitted}), ...], now=...)`: the
  recipients intake left out of queued messages (suppression list), as `refused` with reason
  `recipient suppressed`, so reports, `GET /messages` and the final state count them.
- `for_messages(conn, message_pks=[...])` -> `{pk: [RecipientRow, ...]}` in envelope order.
- `wire_list(rows)` -> the `recipients` list of report items, `GET /messages` and `GET
  /messages/{id}/events` (`RecipientRow.wire()` is the one serializer for all three):
  `[{"address", "status", "code", "reason"}]`, every key always present (null when unknown);
  `needs_wire_list(rows)` says whether an item carries it (some recipient refused or deferred).
`address` must be normalised with `mail_proxy.addresses.normalised_address` first (it is the
dedupe key); `submitted` is the recipient as the app wrote it, which is what `wire()` shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from mail_proxy.addresses import submitted_forms
from mail_proxy.db import storable

RecipientStatus = Literal["accepted", "refused", "deferred"]
ACCEPTED: RecipientStatus = "accepted"
REFUSED: RecipientStatus = "refused"
DEFERRED: RecipientStatus = "deferred"
# The reason given for a recipient on the tenant's suppression list (SPEC section 13).
SUPPRESSED_REASON = "recipient suppressed"


@dataclass(frozen=True)
class RecipientRow:
    """One recipient's latest outcome. `code` is the SMTP reply code when there was one;
    `attempts` counts the SMTP transactions that named it; `next_attempt_ts` (epoch s) is set
    while `deferred`."""

    message_pk: int
    address: str
    status: RecipientStatus
    code: int | None = None
    reason: str | None = None
    attempts: int = 0
    next_attempt_ts: int | None = None
    submitted: str | None = None  # as the app wrote it; shown instead of `address`

    def wire(self) -> dict[str, Any]:
        """The item every surface shows (reports, GET /messages, events)."""
        return {
            "address": self.submitted or self.address,
            "status": self.status,
            "code": self.code,
            "reason": self.reason,
        }


_RECORD = """
INSERT INTO message_recipients AS r
    (message_pk, address, status, code, reason, attempts, next_attempt_ts, updated_ts,
     submitted)
SELECT i.pk, i.address, i.status, i.code, i.reason, i.attempts, i.next_ts, now.ts, i.submitted
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[], $6::int[],
            $7::bigint[], $9::text[])
         AS i(pk, address, status, code, reason, attempts, next_ts, submitted),
     (SELECT $8::bigint) AS now(ts)
ON CONFLICT (message_pk, address) DO UPDATE SET
    status = EXCLUDED.status, code = EXCLUDED.code, reason = EXCLUDED.reason,
    attempts = r.attempts + EXCLUDED.attempts, next_attempt_ts = EXCLUDED.next_attempt_ts,
    updated_ts = EXCLUDED.updated_ts, submitted = coalesce(r.submitted, EXCLUDED.submitted)
WHERE r.status = 'deferred'
"""
_RECORD_SUPPRESSED = """
INSERT INTO message_recipients AS r
    (message_pk, address, status, code, reason, attempts, next_attempt_ts, updated_ts,
     submitted)
SELECT m.pk, a.key, 'refused', NULL, $2::text, 0, NULL, $3::bigint, a.value
FROM jsonb_to_recordset($1::text::jsonb) AS i(tenant_id text, id text, addresses jsonb)
JOIN messages m ON m.tenant_id = i.tenant_id AND m.id = i.id
CROSS JOIN LATERAL jsonb_each_text(i.addresses) AS a(key, value)
WHERE m.state IN ('pending', 'deferred')
ON CONFLICT (message_pk, address) DO UPDATE SET
    status = 'refused', code = NULL, reason = EXCLUDED.reason, next_attempt_ts = NULL,
    updated_ts = EXCLUDED.updated_ts
WHERE r.status = 'deferred'
"""
_FOR_MESSAGES = """
SELECT r.message_pk, r.address, r.status, r.code, r.reason, r.attempts, r.next_attempt_ts,
       r.submitted
FROM message_recipients r WHERE r.message_pk = ANY($1::bigint[])
ORDER BY r.message_pk, r.address
"""
_ENVELOPES = """
SELECT pk, payload->'to' AS "to", payload->'cc' AS cc, payload->'bcc' AS bcc
FROM messages WHERE pk = ANY($1::bigint[])
"""


async def record(conn: asyncpg.Connection, *, rows: Sequence[RecipientRow], now: float) -> None:
    """Upsert outcomes in one statement. `attempts` of each row is *added* to the stored count
    (pass 1 for an SMTP transaction, 0 for an intake decision). Final rows (accepted/refused)
    are never changed again."""
    if not rows:
        return
    await conn.execute(
        _RECORD,
        [r.message_pk for r in rows],
        [r.address for r in rows],
        [r.status for r in rows],
        [r.code for r in rows],
        [storable.optional_text(r.reason) for r in rows],  # a server's words (`storable`)
        [r.attempts for r in rows],
        [r.next_attempt_ts for r in rows],
        int(now),
        [r.submitted for r in rows],
    )


async def record_suppressed(
    conn: asyncpg.Connection,
    *,
    messages: Sequence[tuple[str, str, Mapping[str, str]]],
    now: float,
) -> int:
    """Store the suppressed recipients of queued messages `(tenant_id, id, {normalised address:
    as submitted})` as `refused` with `SUPPRESSED_REASON` (SPEC section 13), in one statement.
    Messages not queued (rejected, or kept as "already sent") are skipped. Returns the rows
    written."""
    if not messages:
        return 0
    batch = json.dumps(
        [{"tenant_id": t, "id": i, "addresses": dict(a)} for t, i, a in messages if a]
    )
    status: str = await conn.execute(_RECORD_SUPPRESSED, batch, SUPPRESSED_REASON, int(now))
    return int(status.split()[-1])


async def for_messages(
    conn: asyncpg.Connection, *, message_pks: Sequence[int]
) -> dict[int, list[RecipientRow]]:
    """The recipient rows of these messages, each message's in envelope order (To, Cc, Bcc as
    submitted: the order of the delivery report's list); messages without rows are absent."""
    out: dict[int, list[RecipientRow]] = {}
    if not message_pks:
        return out
    for row in await conn.fetch(_FOR_MESSAGES, list(message_pks)):
        out.setdefault(row["message_pk"], []).append(RecipientRow(**dict(row.items())))
    if out:
        for envelope in await conn.fetch(_ENVELOPES, list(out)):
            fields = (_recipient_field(envelope[f]) for f in ("to", "cc", "bcc"))
            order = {key: i for i, key in enumerate(submitted_forms(*fields))}
            out[envelope["pk"]].sort(key=lambda r: order.get(r.address, len(order)))
    return out


def _recipient_field(value: Any) -> str | list[str] | None:
    """A stored `to`/`cc`/`bcc` (jsonb text): a string, a list of strings, or nothing."""
    parsed = json.loads(value) if isinstance(value, str) else value
    if isinstance(parsed, str):
        return parsed
    if isinstance(parsed, list):
        return [str(item) for item in parsed if isinstance(item, str)]
    return None


def needs_wire_list(rows: Iterable[RecipientRow]) -> bool:
    """True when some recipient was refused or is still deferred (SPEC section 13)."""
    return any(r.status != ACCEPTED for r in rows)


def wire_list(rows: Iterable[RecipientRow]) -> list[dict[str, Any]]:
    return [r.wire() for r in rows]
