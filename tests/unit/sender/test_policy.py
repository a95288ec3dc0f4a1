"""Pure decisions of the sender: retry policy, failure classification, fairness, budgets."""

from __future__ import annotations

import random
import socket
import ssl

import aiosmtplib
import pytest

from mail_proxy.db.leases import ReadyAccount
from mail_proxy.db.rate_budget import RateBudget, RateLimits, slots_needed
from mail_proxy_sender.delivery.dispatcher import fair_order
from mail_proxy_sender.delivery.failures import (
    AccountFailure,
    PermanentFailure,
    SessionEnded,
    TemporaryFailure,
    Throttled,
    classify_connect_error,
    classify_smtp_error,
)
from mail_proxy_sender.delivery.retry import RetryPolicy

POLICY = RetryPolicy(delays_seconds=(60, 300, 900, 3600, 7200), max_retries=5, jitter_ratio=0.1)


def test_delays_follow_the_table_within_the_jitter() -> None:
    rng = random.Random(7)
    for retry, base in enumerate((60, 300, 900, 3600, 7200, 7200), start=1):
        delay = POLICY.delay_seconds(retry, rng)
        assert base * 0.9 <= delay <= base * 1.1


def test_jitter_spreads_a_burst() -> None:
    rng = random.Random(1)
    assert len({round(POLICY.delay_seconds(1, rng), 3) for _ in range(20)}) > 10


def test_temporary_failure_is_deferred_until_retries_run_out() -> None:
    failure = TemporaryFailure("busy", smtp_code=450)
    first = POLICY.outcome(message_pk=1, attempts=1, failure=failure, now=1000.0)
    assert first.state == "deferred"
    assert first.error == "busy (SMTP 450)"
    assert first.metadata == {"retry_count": 1, "smtp_code": 450, "deferred_ts": first.deferred_ts}
    last = POLICY.outcome(message_pk=1, attempts=6, failure=failure, now=1000.0)
    assert (last.state, last.error) == ("error", "Max retries (5) exceeded: busy (SMTP 450)")


def test_permanent_failure_is_an_error_at_once() -> None:
    outcome = POLICY.outcome(
        message_pk=1, attempts=1, failure=PermanentFailure("no such user", smtp_code=550), now=0
    )
    assert (outcome.state, outcome.error) == ("error", "no such user (SMTP 550)")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (aiosmtplib.SMTPResponseException(450, "busy"), TemporaryFailure),
        # A rate or connection limit named by the server backs the account off...
        (aiosmtplib.SMTPResponseException(421, "4.7.0 Too many messages, slow down"), Throttled),
        (aiosmtplib.SMTPSenderRefused(450, "4.7.1 Rate limit exceeded", "a@b.cd"), Throttled),
        # ...a plain 421 only ends the session, and greylisting is no rate signal.
        (aiosmtplib.SMTPResponseException(421, "4.3.2 Service shutting down"), SessionEnded),
        (aiosmtplib.SMTPDataError(451, "4.7.1 Greylisted, try again later"), TemporaryFailure),
        (aiosmtplib.SMTPDataError(451, "later"), TemporaryFailure),
        (aiosmtplib.SMTPResponseException(554, "no"), PermanentFailure),
        (aiosmtplib.SMTPServerDisconnected("gone"), SessionEnded),
        (aiosmtplib.SMTPReadTimeoutError("slow"), TemporaryFailure),
        (TimeoutError(), TemporaryFailure),
        (ConnectionResetError(), SessionEnded),
    ],
)
def test_classification(exc: BaseException, kind: type) -> None:
    assert type(classify_smtp_error(exc)) is kind


@pytest.mark.parametrize(
    ("exc", "kind", "says"),
    [
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), AccountFailure, "password"),
        (aiosmtplib.SMTPConnectTimeoutError("slow"), AccountFailure, "no answer"),
        (ConnectionRefusedError(), AccountFailure, "connection refused"),
        (socket.gaierror(-2, "Name or service not known"), AccountFailure, "DNS"),
        (
            aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server."),
            AccountFailure,
            "STARTTLS",
        ),
        (aiosmtplib.SMTPResponseException(421, "4.7.0 Too many connections"), Throttled, "421"),
        (aiosmtplib.SMTPResponseException(554, "go away"), AccountFailure, "554"),
    ],
)
def test_a_session_that_cannot_open_is_the_accounts_failure(
    exc: BaseException, kind: type, says: str
) -> None:
    failure = classify_connect_error(exc, host="smtp.example.org", port=587)
    assert type(failure) is kind
    assert says in failure.described


def test_a_certificate_failure_names_the_fix() -> None:
    try:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed")
        except ssl.SSLError as inner:
            raise aiosmtplib.SMTPConnectError("Error connecting") from inner
    except aiosmtplib.SMTPConnectError as exc:
        failure = classify_connect_error(exc, host="relay.example.org", port=587)
    assert isinstance(failure, AccountFailure)
    assert failure.reason.startswith("certificate of relay.example.org:587 not trusted")
    assert "tls_verify false" in failure.reason
    assert "GMP_SMTP_CA_FILE" in failure.reason


def test_fair_order_interleaves_tenants_and_rotates() -> None:
    ready = [
        ReadyAccount(1, "a", False),
        ReadyAccount(2, "a", False),
        ReadyAccount(3, "a", False),
        ReadyAccount(4, "b", False),
        ReadyAccount(5, "c", False),
    ]
    assert [r.account_pk for r in fair_order(ready, 0)] == [1, 4, 5, 2, 3]
    assert [r.account_pk for r in fair_order(ready, 1)] == [4, 5, 1, 2, 3]


def test_slots_needed() -> None:
    assert slots_needed(sent=5, leased=0, limit=20) == 0
    assert slots_needed(sent=20, leased=0, limit=20) == 1
    assert slots_needed(sent=18, leased=5, limit=20) == 4


def test_budgets_combine_to_the_tighter_one() -> None:
    account = RateBudget(5)
    tenant = RateBudget(0, free_at=100.0)
    assert account.combine(tenant) == RateBudget(0, 100.0)
    assert RateBudget(None).combine(account) == account


def test_limits_from_rows() -> None:
    row = {"limit_per_minute": 20, "limit_per_hour": None, "limit_per_day": 0}
    assert RateLimits.of_account(row).windows == ((60, 20),)
    assert RateLimits.of_tenant({"hourly": 100, "daily": 0}).windows == ((3600, 100),)
    assert RateLimits.of_tenant(None).windows == ()
