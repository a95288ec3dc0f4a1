# SPDX-License-Identifier: Apache-2.0
"""Every recipient of a message accounted for (issue 10 item 3; SPEC section 13).

A `RecipientTally` starts from the message's envelope recipients and what earlier attempts
settled (`message_recipients` rows, read with the lease): recipients already accepted or refused
are never named again. Each answer then settles one recipient on its own:

    2xx at DATA            accepted
    5xx at RCPT or DATA    refused (final)
    452 at RCPT            "too many recipients": named again at once in another transaction,
                           as long as the previous one accepted somebody (RFC 5321 4.5.3.1.10)
    other 4xx              deferred: retried alone with the retry table

`outcome()` turns the tally into the message's outcome: `deferred` while some recipient is
deferred and retries are left (deferred ones that exhaust them become refused), else `sent` when
anybody accepted (now or before), else `error`. Rows and the report's `recipients` list are
written only when some recipient was not accepted at once (a v0.6 message stays v0.6).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mail_proxy.db.outcomes import Outcome
from mail_proxy.db.recipients import ACCEPTED, DEFERRED, REFUSED, RecipientRow, RecipientStatus
from mail_proxy.states import MessageState
from mail_proxy_sender.delivery.failures import DeliveryFailure
from mail_proxy_sender.delivery.retry import RetryPolicy
from mail_proxy_sender.delivery.smtp_client import Answer

TOO_MANY_RECIPIENTS = 452
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}\b")


@dataclass(frozen=True)
class Fate:
    status: RecipientStatus
    code: int | None
    reason: str | None


class RecipientTally:
    def __init__(
        self, recipients: Sequence[str], previous: Iterable[Mapping[str, Any]] | None
    ) -> None:
        self.recipients = list(recipients)
        self._previous: dict[str, Fate] = {
            str(row["address"]): Fate(row["status"], row.get("code"), row.get("reason"))
            for row in previous or ()
        }
        self.fates: dict[str, Fate] = {}
        self._named: set[str] = set()  # named in an SMTP transaction during this attempt

    def to_send(self) -> list[str]:
        """Recipients not settled yet, in envelope order."""
        return [
            r
            for r in self.recipients
            if r not in self.fates
            and (r not in self._previous or self._previous[r].status == DEFERRED)
        ]

    def refuse(self, address: str, reason: str, code: int | None = None) -> None:
        self.fates[address] = Fate(REFUSED, code, reason)

    def defer(self, addresses: Iterable[str], failure: DeliveryFailure) -> None:
        for address in addresses:
            self._named.add(address)
            self.fates[address] = Fate(DEFERRED, failure.smtp_code, failure.described)

    def wait(self, address: str, reason: str, until: float) -> None:
        """Deferred without being named (its domain is backed off until `until`, epoch s)."""
        self.fates[address] = Fate(DEFERRED, None, reason)

    def apply(self, answers: Mapping[str, Answer]) -> list[str]:
        """Settle recipients from one transaction; returns those to name again at once (452
        after the transaction accepted somebody)."""
        progressed = any(200 <= a.code < 300 for a in answers.values())
        again = []
        for address, answer in answers.items():
            self._named.add(address)
            if 200 <= answer.code < 300:
                self.fates[address] = Fate(ACCEPTED, answer.code, None)
            elif answer.code >= 500:
                self.fates[address] = Fate(REFUSED, answer.code, answer.described)
            elif _too_many_recipients(answer) and progressed:
                again.append(address)
            else:
                self.fates[address] = Fate(DEFERRED, answer.code, answer.described)
        return again

    @property
    def settled_before(self) -> bool:
        """Earlier attempts settled some recipient (rows exist)."""
        return bool(self._previous)

    @property
    def accepted_now(self) -> bool:
        return any(f.status == ACCEPTED for f in self.fates.values())

    def merged(self) -> dict[str, Fate]:
        """Every recipient's latest fate (this attempt over earlier ones), envelope order."""
        out: dict[str, Fate] = {}
        for address in self.recipients:
            fate = self.fates.get(address) or self._previous.get(address)
            if fate is not None:
                out[address] = fate
        for address, fate in self._previous.items():
            out.setdefault(address, fate)
        return out

    def outcome(
        self,
        *,
        message_pk: int,
        attempts: int,
        policy: RetryPolicy,
        now: float,
    ) -> Outcome:
        """The message's outcome after attempt number `attempts` (see the module doc)."""
        retry = attempts <= policy.max_retries
        until = int(now + policy.delay_seconds(attempts)) if retry else None
        if not retry:
            for address, fate in list(self.fates.items()):
                if fate.status == DEFERRED:
                    reason = f"Max retries ({policy.max_retries}) exceeded: {fate.reason}"
                    self.fates[address] = Fate(REFUSED, fate.code, reason)
        merged = self.merged()
        deferred = {a: f for a, f in merged.items() if f.status == DEFERRED}
        refused = {a: f for a, f in merged.items() if f.status == REFUSED}
        needs_list = bool(deferred or refused)
        rows: tuple[RecipientRow, ...] = ()
        if needs_list or self._previous:
            rows = tuple(
                RecipientRow(
                    message_pk,
                    address,
                    fate.status,
                    fate.code,
                    fate.reason,
                    attempts=1 if address in self._named else 0,
                    next_attempt_ts=until if fate.status == DEFERRED else None,
                )
                for address, fate in merged.items()
                if address in self.fates
            )
        wire = [
            RecipientRow(message_pk, a, f.status, f.code, f.reason).wire()
            for a, f in merged.items()
        ]
        meta: dict[str, Any] = {"retry_count": attempts - 1}
        if needs_list:
            meta["recipients"] = wire
        if refused:
            # History (`GET /messages?include_history`) keeps its earlier shape too.
            meta["refused"] = {a: f.reason for a, f in refused.items()}
        ts = int(now)
        if deferred:
            meta.update(deferred_ts=until, retry_count=attempts)
            return Outcome(
                message_pk,
                MessageState.DEFERRED,
                ts,
                deferred_ts=until,
                error=_summary(deferred),
                metadata=meta,
                recipients=rows,
            )
        if any(f.status == ACCEPTED for f in merged.values()):
            return Outcome(
                message_pk,
                MessageState.SENT,
                ts,
                sent_at=now,
                metadata=meta if needs_list else None,
                recipients=rows,
            )
        codes = [f.code for f in refused.values() if f.code is not None]
        if codes:
            meta["smtp_code"] = codes[0]
        return Outcome(
            message_pk,
            MessageState.ERROR,
            ts,
            error=f"All recipients refused: {_summary(refused)}",
            metadata=meta,
            recipients=rows,
        )


def _too_many_recipients(answer: Answer) -> bool:
    """452 at RCPT meaning "too many recipients" (RFC 3463 4.5.3, or a 452 without an enhanced
    code, RFC 5321 4.5.3.1.10), not a full mailbox (4.2.2) or a full server (4.3.1)."""
    if answer.code != TOO_MANY_RECIPIENTS or answer.stage != "rcpt":
        return False
    text = answer.text.lstrip()
    return text.startswith("4.5.3") or not _ENHANCED.match(text)


def _summary(fates: Mapping[str, Fate]) -> str:
    return "; ".join(f"{address}: {fate.reason}" for address, fate in fates.items())
