"""Account and mailbox hosts: a DNS name or an IP literal, nothing else (mail_proxy.hostnames)."""

from __future__ import annotations

import pytest

from mail_proxy.hostnames import host_problem

VALID = [
    "smtp.example.org",
    "localhost",
    "relay_1.internal",
    "bücher.example",
    "xn--bcher-kva.example",
    "127.0.0.1",
    "::1",
    "[2001:db8::1]",
]
INVALID = {
    "http://x.com": "no scheme or path",
    "smtp.example.org/x": "no scheme or path",
    "x.com:25": "the port goes in `port`",
    "[::1": "not a valid host name or IP address",
    "-x.com": "not a valid host name",
    "x..com": "not a valid host name",
    "mail.example.org.": "not a valid host name",
    "a" * 64 + ".com": "not a valid host name",
    "a b.com": "not a valid host name",
}


@pytest.mark.parametrize("value", VALID)
def test_host_names_and_ip_literals_are_accepted(value: str) -> None:
    assert host_problem(value) is None


@pytest.mark.parametrize(("value", "says"), INVALID.items())
def test_anything_else_is_refused_with_a_reason(value: str, says: str) -> None:
    problem = host_problem(value)
    assert problem is not None
    assert says in problem
