# SPDX-License-Identifier: Apache-2.0
"""Every recipient of a message accounted for (issue 10 item 3; SPEC section 13).

A `RecipientTally` starts from the message's envelope recipients and what earlier attempts
settled (`message_recipients` rows, read with the lease): recipients already accepted or refused
are never named again. Each answer then settles one recipient on its own (the table is in
`rcpt_answers`): accepted, refused (5xx for that recipient, final), deferred (4xx for that
recipient), or "too many recipients" (not settled: named again in another transaction).

A session that ends under a transaction (421, hang-up, timeout) is nobody's answer: the
recipients it left without one are deferred with code null and the session's reason (`defer`),
and the recipient whose RCPT the session ended at is a *suspect*: named after the others, alone,
so it can never keep them from their message.

`outcome()` turns the tally into the message's outcome: `deferred` while some recipient is
deferred and retries are left, else `sent` when anybody accepted (now or before), else `error`.
A recipient still deferred when the retries run out is given up: `refused` with code null
(the server never refused it, so no server code is shown as if it had) and reason `Max retries
(N) exceeded: <last reason>`. Apps read `deferred` as "still being tried": a recipient nobody
will try again is final, like every recipient of a finished message. Rows and the report's
`recipients` list are written only when some recipient was not accepted at once (a v0.6
message stays v0.6). Rows are keyed by the normalised address (dedupe); reports show the
address as the app submitted it (`submitted`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mail_proxy.db.outcomes import Outcome
from mail_proxy.db.recipients import ACCEPTED, DEFERRED, REFUSED, RecipientRow, RecipientStatus
from mail_proxy.states import MessageState
from mail_proxy_sender.delivery.failures import DeliveryFailure
from mail_proxy_sender.delivery.rcpt_answers import Answer, RcptOutcome, rcpt_outcome
from mail_proxy_sender.delivery.retry import RetryPolicy

# The reason prefix of a recipient deferred because a session ended at its RCPT: the next
# attempt names it after the others again.
SUSPECT = "the session ended at this recipient"


@dataclass(frozen=True)
class Fate:
    status: RecipientStatus
    code: int | None
    reason: str | None


class RecipientTally:
    def __init__(
        self,
        recipients: Sequence[str],
        previous: Iterable[Mapping[str, Any]] | None,
        submitted: Mapping[str, str] | None = None,
        *,
        attempt: int = 0,
    ) -> None:
        """`recipients`: normalised envelope addresses; `previous`: stored rows (`address`,
        `status`, `code`, `reason`); `submitted`: normalised address -> as the app wrote it;
        `attempt`: the attempt number (earlier suspects take turns first, one more each
        attempt, so a session cap per attempt never leaves one of them untried for good)."""
        self.recipients = list(recipients)
        self._submitted = dict(submitted or {})
        self._too_many: dict[str, Answer] = {}
        self._previous: dict[str, Fate] = {
            str(row["address"]): Fate(row["status"], row.get("code"), row.get("reason"))
            for row in previous or ()
        }
        # Recipients whose RCPT a session ended at (now, or in an earlier attempt, as their
        # stored reason says): named last, alone, each as often as the others (module doc).
        earlier = [
            a
            for a in self.recipients
            if a in self._previous
            and self._previous[a].status == DEFERRED
            and (self._previous[a].reason or "").startswith(SUSPECT)
        ]
        if earlier:
            turn = attempt % len(earlier)
            earlier = earlier[turn:] + earlier[:turn]
        self.suspects: dict[str, int] = dict.fromkeys(earlier, 0)
        self._ended_by: dict[str, str] = {}  # suspect -> how the session ended at it
        self._ended_alone: set[str] = set()
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

    def next_names(self) -> list[str]:
        """The recipients to name in the next transaction: every unsettled one but the
        suspects, else one suspect alone."""
        pending = self.to_send()
        others = [r for r in pending if r not in self.suspects]
        if others:
            return others
        # Fewest turns first; ties in `suspects` order (rotated per attempt).
        order = {address: i for i, address in enumerate(self.suspects)}
        return sorted(pending, key=lambda r: (self.suspects.get(r, 0), order.get(r, 0)))[:1]

    def suspect(self, address: str, *, alone: bool, why: str | None = None) -> None:
        """A session ended at `address`'s RCPT (`alone`: named in a transaction of its own;
        `why`: how it ended, kept as that recipient's reason)."""
        self.suspects[address] = self.suspects.get(address, 0) + 1
        if why:
            self._ended_by[address] = why
        if alone:
            self._ended_alone.add(address)

    @property
    def only_proven_suspects_left(self) -> bool:
        """Every unsettled recipient ended a session in this attempt while named alone: a new
        session would only end the same way."""
        pending = self.to_send()
        return bool(pending) and all(a in self._ended_alone for a in pending)

    def refuse(self, address: str, reason: str, code: int | None = None) -> None:
        self.fates[address] = Fate(REFUSED, code, reason)

    def defer(self, addresses: Iterable[str], failure: DeliveryFailure) -> None:
        """No answer for these recipients: the session ended or could not open. Deferred
        with the session's reason and no code (the server said nothing about them)."""
        for address in addresses:
            if address in self.suspects:
                # How the session ended at this recipient, not how the last one ended.
                ended = self._ended_by.get(address) or self._previous_ending(address)
                reason = f"{SUSPECT}: {ended or failure.described}"
            else:
                reason = f"no answer for this recipient: {failure.described}"
            self.fates[address] = Fate(DEFERRED, None, reason)

    def _previous_ending(self, address: str) -> str | None:
        earlier = self._previous.get(address)
        text = earlier.reason if earlier is not None else None
        if text and text.startswith(f"{SUSPECT}: "):
            return text[len(SUSPECT) + 2 :]
        return None

    def defer_too_many(self, addresses: Sequence[str]) -> None:
        """Recipients a fresh session left out for its recipient limit (the first of them
        answered "too many recipients", the others were not named after it): retried with the
        retry table, with the server's answer."""
        first = next(self._too_many[a] for a in addresses if a in self._too_many)
        for address in addresses:
            answer = self._too_many.get(address, first)
            self.fates[address] = Fate(DEFERRED, answer.code, answer.described)

    def wait(self, address: str, reason: str, until: float) -> None:
        """Deferred without being named (its domain is backed off until `until`, epoch s)."""
        self.fates[address] = Fate(DEFERRED, None, reason)

    def apply(self, answers: Mapping[str, Answer]) -> list[str]:
        """Settle recipients from one transaction; returns those left out for the server's
        recipient limit ("too many recipients"), still unsettled."""
        too_many = []
        for address, answer in answers.items():
            self._named.add(address)
            outcome = rcpt_outcome(answer)
            if outcome is RcptOutcome.ACCEPTED:
                self.fates[address] = Fate(ACCEPTED, answer.code, None)
            elif outcome is RcptOutcome.REFUSED:
                self.fates[address] = Fate(REFUSED, answer.code, answer.described)
            elif outcome is RcptOutcome.TOO_MANY:
                self._too_many[address] = answer
                too_many.append(address)
            else:
                self.fates[address] = Fate(DEFERRED, answer.code, answer.described)
        return too_many

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
        given_up = False
        if not retry:
            # Given up by us, not refused by the server: final, without a server code.
            for address, fate in list(self.fates.items()):
                if fate.status == DEFERRED:
                    reason = f"Max retries ({policy.max_retries}) exceeded: {fate.reason}"
                    self.fates[address] = Fate(REFUSED, None, reason)
                    given_up = True
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
                    submitted=self._submitted.get(address),
                )
                for address, fate in merged.items()
                if address in self.fates
            )
        wire = [
            RecipientRow(
                message_pk, a, f.status, f.code, f.reason, submitted=self._submitted.get(a)
            ).wire()
            for a, f in merged.items()
        ]
        meta: dict[str, Any] = {"retry_count": attempts - 1}
        if needs_list:
            meta["recipients"] = wire
        if refused:
            # History (`GET /messages?include_history`) keeps its earlier shape too.
            meta["refused"] = {self._submitted.get(a, a): f.reason for a, f in refused.items()}
        ts = int(now)
        if deferred and retry:
            meta.update(deferred_ts=until, retry_count=attempts)
            return Outcome(
                message_pk,
                MessageState.DEFERRED,
                ts,
                deferred_ts=until,
                error=_summary(deferred, self._submitted),
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
        error = (
            f"No recipient accepted: {_summary({**refused, **deferred}, self._submitted)}"
            if deferred or given_up
            else f"All recipients refused: {_summary(refused, self._submitted)}"
        )
        return Outcome(
            message_pk,
            MessageState.ERROR,
            ts,
            error=error,
            metadata=meta,
            recipients=rows,
        )


def _summary(fates: Mapping[str, Fate], shown: Mapping[str, str]) -> str:
    """`address: reason; ...`, each address as the app submitted it."""
    return "; ".join(f"{shown.get(a, a)}: {fate.reason}" for a, fate in fates.items())
