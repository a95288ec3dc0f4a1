"""The per-domain back-off's arithmetic (issue 10 item 4)."""

from __future__ import annotations

from mail_proxy_sender.delivery import domain_backoff
from mail_proxy_sender.delivery.domain_backoff import DomainBackoff, domain_of


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
