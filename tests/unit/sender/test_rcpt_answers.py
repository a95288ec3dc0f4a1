"""The answer -> recipient outcome table of `rcpt_answers` (RFC 5321 4.5.3.1.10, RFC 3463)."""

from __future__ import annotations

import pytest

from mail_proxy_sender.delivery.failures import names_rate_limit
from mail_proxy_sender.delivery.rcpt_answers import (
    Answer,
    RcptOutcome,
    enhanced_code,
    rcpt_outcome,
)

CASES = [
    (250, "OK", "rcpt", RcptOutcome.ACCEPTED),
    (251, "User not local; will forward", "rcpt", RcptOutcome.ACCEPTED),
    (250, "2.0.0 queued", "data", RcptOutcome.ACCEPTED),
    (452, "4.5.3 Too many recipients", "rcpt", RcptOutcome.TOO_MANY),
    (452, "Too many recipients", "rcpt", RcptOutcome.TOO_MANY),
    (452, "4.2.1 too many recipients for this message", "rcpt", RcptOutcome.TOO_MANY),
    (452, "4.3.1 Insufficient system storage", "rcpt", RcptOutcome.TOO_MANY),
    (452, "Requested action not taken", "rcpt", RcptOutcome.TOO_MANY),
    (452, "4.2.2 Mailbox full", "rcpt", RcptOutcome.DEFERRED),
    (452, "Mailbox full", "rcpt", RcptOutcome.DEFERRED),
    (452, "4.2.0 user over quota", "rcpt", RcptOutcome.DEFERRED),
    (452, "4.5.3 Too many recipients", "data", RcptOutcome.DEFERRED),
    (552, "5.5.3 Too many recipients", "rcpt", RcptOutcome.TOO_MANY),
    (552, "Too many recipients", "rcpt", RcptOutcome.TOO_MANY),
    (552, "5.2.2 Mailbox full", "rcpt", RcptOutcome.REFUSED),
    (552, "5.3.4 Message too big", "data", RcptOutcome.REFUSED),
    (451, "4.7.1 Greylisted", "rcpt", RcptOutcome.DEFERRED),
    (450, "4.2.0 Mailbox busy", "rcpt", RcptOutcome.DEFERRED),
    (550, "5.1.1 User unknown", "rcpt", RcptOutcome.REFUSED),
    (554, "5.7.1 Rejected", "data", RcptOutcome.REFUSED),
]


@pytest.mark.parametrize(("code", "text", "stage", "expected"), CASES)
def test_each_answer_maps_to_one_outcome(
    code: int, text: str, stage: str, expected: RcptOutcome
) -> None:
    assert rcpt_outcome(Answer(code, text, stage)) is expected


def test_enhanced_codes_are_read_from_the_start_of_the_text() -> None:
    assert enhanced_code("4.5.3 Too many") == (4, 5, 3)
    assert enhanced_code(" 5.1.1 x") == (5, 1, 1)
    assert enhanced_code("Too many 4.5.3") is None
    assert enhanced_code("4.5 x") is None


@pytest.mark.parametrize(
    ("code", "text", "rate"),
    [
        (421, "4.7.0 Error: too many errors", False),  # Postfix smtpd_hard_error_limit
        (452, "4.5.3 Too many recipients", False),
        (421, "4.3.2 Service shutting down", False),
        (451, "4.7.1 Greylisted, try again later", False),
        (421, "4.7.0 Too many connections", True),
        (421, "4.7.0 too many concurrent sessions", True),
        (451, "4.7.1 Rate limit exceeded", True),
        (450, "4.7.1 throttled: too many recipients from your IP", True),
    ],
)
def test_only_answers_naming_a_rate_or_connection_limit_are_rate_limits(
    code: int, text: str, rate: bool
) -> None:
    assert names_rate_limit(code, text) is rate
