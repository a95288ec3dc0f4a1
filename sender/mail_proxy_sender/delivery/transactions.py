# SPDX-License-Identifier: Apache-2.0
"""The transactions of one message on one SMTP session (issue 10 items 1-4).

`TransactionLoop.run` names the message's unsettled recipients in MAIL/RCPT/DATA transactions
on one open session until each has an answer (`rcpt_answers` says what each answer means), or
the session ends under it:

- "too many recipients" (452 at RCPT, RFC 5321 4.5.3.1.10): the recipients left out go in the
  next transaction at once when this one settled somebody; when it settled nobody, the limit is
  the session's: a new session is asked for (`SessionEnded`), and a fresh session that still
  names nobody defers them for the retry table (never refused for it);
- a session that ends (421, hang-up, timeout) returns its failure: the caller opens a new
  session, where the recipient whose RCPT ended it (a suspect) is named last and alone, so one
  recipient can never keep the others from their message;
- a destination domain whose servers throttle at RCPT is backed off on its own (`DomainBackoff`):
  its recipients wait without being named.

The loop ends: every transaction settles somebody, or defers, or returns.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable

from mail_proxy.db.outcomes import Outcome
from mail_proxy.db.recipients import DEFERRED
from mail_proxy.mime import WireMessage
from mail_proxy_sender.delivery.domain_backoff import DomainBackoff, domain_of
from mail_proxy_sender.delivery.failures import (
    DeliveryFailure,
    PermanentFailure,
    SessionEnded,
    names_rate_limit,
)
from mail_proxy_sender.delivery.recipient_tally import RecipientTally
from mail_proxy_sender.delivery.smtp_client import SmtpConnection, TransactionResult

NEEDS_SMTPUTF8 = "recipient address needs SMTPUTF8, which the server does not offer"
_SESSION_LIMIT = "too many recipients for this session"


class TransactionLoop:
    def __init__(self, domains: DomainBackoff) -> None:
        self._domains = domains

    async def run(
        self, conn: SmtpConnection, wire: WireMessage, tally: RecipientTally, account_pk: int
    ) -> DeliveryFailure | None:
        """Transactions on `conn` until every recipient of `tally` is settled; the failure that
        ended the session, if one did (see the module doc)."""
        self.defer_throttled_domains(account_pk, tally)
        while names := tally.next_names():
            before = len(tally.to_send())
            result = await conn.transaction(
                sender=wire.envelope_from,
                recipients=names,
                data=wire.data,
                smtputf8=wire.smtputf8,
            )
            if result.ended_at_address is not None:
                tally.suspect(
                    result.ended_at_address,
                    alone=len(names) == 1,
                    why=result.ended.described if result.ended is not None else None,
                )
            ended = self._domain_limits(account_pk, result)
            if (
                result.refused_message is not None
                and not tally.fates
                and not tally.settled_before
                and all(a.stage != "rcpt" for a in result.answers.values())
            ):
                # The message itself refused, before anybody was settled: its failure, with
                # the retry table and reason of a whole message.
                return result.refused_message
            too_many = tally.apply(result.answers)
            self.defer_throttled_domains(account_pk, tally)
            if ended is not None:
                return ended if tally.to_send() else None
            if len(tally.to_send()) < before:
                continue  # progress: the ones left out go in the next transaction at once
            if too_many and conn.transactions > 1:
                # Nobody settled on a session that carried earlier transactions: its limit.
                return SessionEnded(_SESSION_LIMIT, smtp_code=452)
            if too_many:
                # A fresh session takes nobody: these and the ones not named wait for a retry.
                tally.defer_too_many([*too_many, *result.untried])
            else:
                # No answer and no failure cannot happen; never loop on it.
                tally.defer(names, SessionEnded("the server answered no recipient"))
        return None

    def _domain_limits(self, account_pk: int, result: TransactionResult) -> DeliveryFailure | None:
        """Learn from one transaction which destination domains throttle (a 4xx at RCPT naming
        a rate limit) and which accept again; the failure that ended the session, where a 421
        at RCPT naming a rate limit is the domain's, not the account's: a new session carries
        on with the other domains."""
        now = time.time()
        for address, answer in result.answers.items():
            if 200 <= answer.code < 300:
                self._domains.accepted(account_pk, domain_of(address))
            elif answer.stage == "rcpt" and names_rate_limit(answer.code, answer.text):
                self._domains.throttle(account_pk, domain_of(address), now)
        at, at_address = result.ended_at, result.ended_at_address
        if at is not None and at_address is not None and names_rate_limit(at.code, at.text):
            self._domains.throttle(account_pk, domain_of(at_address), now)
            return SessionEnded(at.text, smtp_code=at.code)
        return result.ended

    def defer_throttled_domains(self, account_pk: int, tally: RecipientTally) -> None:
        """Recipients whose domain is backed off wait, without being named (see
        `domain_backoff`)."""
        now = time.time()
        for address, until in self._domains.throttled(account_pk, tally.to_send(), now).items():
            tally.wait(address, f"domain {domain_of(address)} throttled by its servers", until)

    def after_domain_backoff(
        self, account_pk: int, tally: RecipientTally, outcome: Outcome
    ) -> Outcome:
        """A deferred message comes back no earlier than some deferred recipient can be named:
        when every one waits for its domain's back-off, at the earliest end of those."""
        if outcome.deferred_ts is None:
            return outcome
        deferred = [a for a, f in tally.merged().items() if f.status == DEFERRED]
        waits = self._domains.throttled(account_pk, deferred, time.time())
        if not deferred or len(waits) < len(deferred):
            return outcome
        ready = int(min(waits.values())) + 1
        if ready <= outcome.deferred_ts:
            return outcome
        metadata = {**(outcome.metadata or {}), "deferred_ts": ready}
        return dataclasses.replace(outcome, deferred_ts=ready, metadata=metadata)

    @staticmethod
    async def without_smtputf8(
        wire: WireMessage,
        rebuild: Callable[[frozenset[str]], Awaitable[WireMessage]],
        tally: RecipientTally,
    ) -> WireMessage:
        """The server offers no SMTPUTF8 (RFC 6531): recipients that need it are refused, the
        others get a copy whose headers leave them out; a sender that needs it fails."""
        for address in wire.utf8_recipients:
            tally.refuse(address, NEEDS_SMTPUTF8)
        if not tally.to_send():
            return wire
        ascii_wire = await rebuild(wire.utf8_recipients)
        if ascii_wire.smtputf8:
            raise PermanentFailure(
                "the sender or reply-to address needs SMTPUTF8, which the server does not offer"
            )
        return ascii_wire
