# SPDX-License-Identifier: BUSL-1.1
"""What a poller does with one fetched message, inside the transaction that advances its UID.

Bounce mailboxes: `parse_bounce`, then for each bounced recipient find the message
(`mail_proxy.db.correlate`) and `record_bounce` (event, log, suppression). A bounce that names
no stored message still teaches a tenant mailbox's suppression list; in the instance mailbox
it is only counted (`gmp_bounces_uncorrelated_total`).
PEC mailboxes: `parse_pec_receipt`, find the message among the account's, `record_pec_event`;
an error receipt naming one recipient also marks that recipient `refused` in the message's
recipient outcomes (`mark_bounced`), as a bounce does.
Mail that is neither (auto-replies, chatter) is skipped: its UID still advances.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import asyncpg

from mail_proxy.db.bounced_recipients import mark_bounced
from mail_proxy.db.bounces import Bounce, SuppressionPolicy, record_bounce
from mail_proxy.db.correlate import Clues, Scope, find_message
from mail_proxy.db.mailboxes import MailboxConfig
from mail_proxy.db.pec import PecEvent, record_pec_event
from mail_proxy.inbound.dsn import parse_bounce
from mail_proxy.inbound.pec import parse_pec_receipt

log = logging.getLogger(__name__)


@dataclass
class Handled:
    """What one message produced; metrics are counted once the transaction commits."""

    bounces: list[tuple[str, str]] = field(default_factory=list)  # (tenant, hard|soft)
    pec: list[str] = field(default_factory=list)  # event kinds
    uncorrelated: int = 0
    suppressed: int = 0

    @property
    def events(self) -> int:
        return len(self.bounces) + len(self.pec)


@dataclass(frozen=True)
class HandlerPolicy:
    secret: str
    suppression: SuppressionPolicy
    recent_seconds: int


async def handle_bounce(
    conn: asyncpg.Connection,
    *,
    mailbox: MailboxConfig,
    raw: bytes,
    policy: HandlerPolicy,
    now_ts: int,
) -> Handled:
    handled = Handled()
    report = parse_bounce(raw)
    if report is None:
        return handled
    scope = Scope(tenant_id=mailbox.tenant_id)
    for recipient in report.recipients:
        clues = Clues(
            original=report.original,
            mail_ids=report.mail_ids,
            message_ids=report.message_ids,
            envelope=report.envelope,
            text=report.text,
            recipient=recipient.address,
        )
        found = await find_message(
            conn,
            secret=policy.secret,
            scope=scope,
            clues=clues,
            now_ts=now_ts,
            recent_seconds=policy.recent_seconds,
        )
        tenant_id = found.tenant_id if found else mailbox.tenant_id
        if found is None:
            handled.uncorrelated += 1
            log.info(
                "bounce not correlated",
                extra={"action": "bounce_uncorrelated", "mailbox": mailbox.key},
            )
        if tenant_id is None:
            continue
        recorded = await record_bounce(
            conn,
            bounce=Bounce(
                tenant_id=tenant_id,
                address=recipient.address,
                bounce_type=recipient.bounce_type,
                code=recipient.code,
                reason=recipient.reason,
                event_ts=now_ts,
                source="imap",
                message_pk=found.message_pk if found else None,
                warning=recipient.warning,
            ),
            policy=policy.suppression,
        )
        if recorded.event_id is not None:
            handled.bounces.append((tenant_id, recipient.bounce_type))
        handled.suppressed += int(recorded.suppressed)
        log.info(
            "bounce recorded",
            extra={
                "action": "bounce",
                "tenant_id": tenant_id,
                "message_id": recorded.message_id,
                "bounce_type": recipient.bounce_type,
                "bounce_code": recipient.code,
                "correlated_by": found.method if found else None,
                "reader": report.reader,
            },
        )
    return handled


async def handle_pec(
    conn: asyncpg.Connection,
    *,
    mailbox: MailboxConfig,
    raw: bytes,
    policy: HandlerPolicy,
    now_ts: int,
) -> Handled:
    handled = Handled()
    receipt = parse_pec_receipt(raw)
    if receipt is None:
        return handled
    clues = Clues(
        original="\n".join(filter(None, [receipt.reference_message_id, receipt.text])),
        mail_ids=receipt.mail_ids,
        message_ids=[receipt.reference_message_id] if receipt.reference_message_id else [],
        recipient=receipt.recipient,
    )
    found = await find_message(
        conn,
        secret=policy.secret,
        scope=Scope(tenant_id=mailbox.tenant_id, account_pk=mailbox.account_pk),
        clues=clues,
        now_ts=now_ts,
        recent_seconds=policy.recent_seconds,
    )
    if found is None:
        handled.uncorrelated += 1
        log.info("PEC receipt not correlated", extra={"action": "pec_uncorrelated"})
        return handled
    await record_pec_event(
        conn,
        event=PecEvent(
            message_pk=found.message_pk,
            event=receipt.event,
            receipt=receipt.receipt_type,
            event_ts=now_ts,
            pec_timestamp=receipt.timestamp,
            recipient=receipt.recipient,
            error_reason=receipt.error_reason,
        ),
    )
    if receipt.event == "pec_error" and receipt.recipient:
        await mark_bounced(
            conn,
            tenant_id=found.tenant_id,
            message_pk=found.message_pk,
            address=receipt.recipient,
            label=f"PEC {receipt.receipt_type}",
            reason=receipt.error_reason,
            now=now_ts,
        )
    handled.pec.append(receipt.event)
    log.info(
        "PEC receipt recorded",
        extra={
            "action": receipt.event,
            "tenant_id": found.tenant_id,
            "message_id": found.message_id,
            "receipt": receipt.receipt_type,
        },
    )
    return handled
