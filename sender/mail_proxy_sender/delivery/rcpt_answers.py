# SPDX-License-Identifier: Apache-2.0
"""What one server answer means for one recipient (issue 10 items 1-3; SPEC section 13).

The mapping, first matching row wins (`Answer.stage` is where the answer came):

    stage      code   enhanced code / text                  outcome
    RCPT/DATA  2xx    any                                   ACCEPTED
    RCPT       421    any                                   (never here: the session ended,
                                                            see `smtp_client`; nobody blamed)
    RCPT       452    text says "too many"                  TOO_MANY: name it again in another
                                                            transaction (RFC 5321 4.5.3.1.10)
    RCPT       452    X.2.2, or text "mailbox full/quota"   DEFERRED: this mailbox is full
                                                            (RFC 3463 X.2.2), retried alone
    RCPT       452    none, X.5.3, any other (4.2.x, 4.3.x) TOO_MANY (RFC 5321 4.5.3.1.10: 452
                                                            is the "too many recipients" code;
                                                            RFC 3463 X.5.3)
    RCPT       552    X.5.3, or text says "too many"        TOO_MANY (RFC 5321 4.5.3.1.10: the
                                                            old RFC 821 code, to be treated as
                                                            temporary)
    any        4xx    any other                             DEFERRED: retried alone with the
                                                            retry table (RFC 5321 4.2.1)
    any        5xx    any other                             REFUSED: final (RFC 5321 4.2.1)

TOO_MANY is not a judgement on the recipient: the transaction that got it names nobody more
(each would only collect an error, and servers hang up after a few), goes on to DATA with those
accepted, and the recipients it left out go in the next transaction at once (same session when
that one accepted somebody, else a new session). Only when a fresh session names nobody do they
wait for the retry table, as `deferred` — never `refused` because of a recipient limit.
A misread (a 452 meaning a full disk) costs one more transaction, never a recipient.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_TOO_MANY_TEXT = re.compile(r"too\s+many", re.I)
_MAILBOX_FULL_TEXT = re.compile(r"mailbox\s+(is\s+)?full|over\s*quota|quota", re.I)


@dataclass(frozen=True)
class Answer:
    """The server's answer for one recipient: at RCPT when it refused it there, else at DATA
    (or at MAIL, the same for every recipient)."""

    code: int
    text: str
    stage: str  # "rcpt" | "data" | "mail"

    @property
    def described(self) -> str:
        return f"{self.code} {self.text}".strip()


class RcptOutcome(enum.Enum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    DEFERRED = "deferred"
    TOO_MANY = "too_many"


def enhanced_code(text: str) -> tuple[int, int, int] | None:
    """The RFC 3463 enhanced status code a reply text starts with, e.g. (4, 5, 3)."""
    match = _ENHANCED.match(text)
    if match is None:
        return None
    return int(match[1]), int(match[2]), int(match[3])


def rcpt_outcome(answer: Answer) -> RcptOutcome:
    """The recipient's outcome for `answer` (the table in the module doc)."""
    if 200 <= answer.code < 300:
        return RcptOutcome.ACCEPTED
    if answer.stage == "rcpt" and _too_many_recipients(answer):
        return RcptOutcome.TOO_MANY
    if answer.code >= 500:
        return RcptOutcome.REFUSED
    return RcptOutcome.DEFERRED


def _too_many_recipients(answer: Answer) -> bool:
    enhanced = enhanced_code(answer.text)
    if answer.code == 452:
        if _TOO_MANY_TEXT.search(answer.text):
            return True
        mailbox_full = enhanced is not None and enhanced[1:] == (2, 2)
        return not (mailbox_full or _MAILBOX_FULL_TEXT.search(answer.text))
    if answer.code == 552:
        return (enhanced is not None and enhanced[1:] == (5, 3)) or bool(
            _TOO_MANY_TEXT.search(answer.text)
        )
    return False
