"""The per-domain back-off's arithmetic (issue 10 item 4)."""

from __future__ import annotations

import pytest

from mail_proxy_sender.delivery import domain_backoff
from mail_proxy_sender.delivery.domain_backoff import DomainBackoff, domain_of, payload


def test_doubles_up_to_the_maximum_and_resets_on_acceptance() -> None:
    b = DomainBackoff(base_seconds=10, max_seconds=35)
    assert b.throttle(1, "slow.example", 100) == 110
    assert b.throttle(1, "slow.example", 100) == 120
    assert b.throttle(1, "slow.example", 100) == 135
    assert b.until(1, "slow.example", 134) == 135
    assert b.until(1, "slow.example", 135) is None
    assert b.until(2, "slow.example", 100) is None  # per account
    assert b.throttled(1, ["a@Slow.Example", "b@fast.example"], 101) == {"a@Slow.Example": 135}
    b.accepted(1, "slow.example")
    assert b.throttle(1, "slow.example", 200) == 210


def test_bounded_memory() -> None:
    b = DomainBackoff(base_seconds=10, max_seconds=10)
    limit = domain_backoff._MAX_ENTRIES
    for i in range(limit + 5):
        b.throttle(1, f"d{i}.example", 0)
    assert len(b._entries) <= limit
    assert b.until(1, f"d{limit + 4}.example", 1) == 10


def test_domain_of() -> None:
    assert domain_of("A@B.Example") == "b.example"
    assert domain_of("user@xn--bcher-kva.example") == "xn--bcher-kva.example"


def test_changes_are_published_and_applied_by_another_sender() -> None:
    sent: list[str] = []
    here = DomainBackoff(base_seconds=60, max_seconds=900, publish=sent.append)
    there = DomainBackoff(base_seconds=60, max_seconds=900)
    until = here.throttle(7, "slow.example", 1000.0)
    here.accepted(7, "fast.example")  # never throttled: nothing to tell
    assert len(sent) == 1
    assert there.apply(sent[0], 1000.0)
    assert there.until(7, "slow.example", 1001.0) == until
    here.accepted(7, "slow.example")
    assert there.apply(sent[1], 1001.0)
    assert there.until(7, "slow.example", 1001.0) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        "null",
        '{"account_pk": "x", "domain": "d", "until": 1}',
        '{"account_pk": 1, "until": 1}',
        '{"account_pk": 1, "domain": "", "until": 5000}',
        '{"account_pk": 1, "domain": "d", "until": "soon"}',
        '{"account_pk": 1, "domain": "' + "d" * 300 + '", "until": 5000}',
    ],
)
def test_malformed_notifications_are_ignored(text: str) -> None:
    backoff = DomainBackoff(base_seconds=60, max_seconds=900)
    assert not backoff.apply(text, 1000.0)
    assert backoff.throttled(1, ["a@d"], 1000.0) == {}


def test_a_notified_throttle_never_lasts_beyond_the_maximum() -> None:
    backoff = DomainBackoff(base_seconds=60, max_seconds=900)
    assert backoff.apply(payload(1, "d.example", 1e300, 10**9), 1000.0)
    assert backoff.until(1, "d.example", 1000.0) == 1900.0
    assert backoff.apply(payload(1, "e.example", float("inf")), 1000.0)
    assert backoff.until(1, "e.example", 1000.0) is None
    # An older, shorter throttle does not shorten a longer one.
    assert backoff.apply(payload(1, "d.example", 1100.0), 1000.0)
    assert backoff.until(1, "d.example", 1000.0) == 1900.0
