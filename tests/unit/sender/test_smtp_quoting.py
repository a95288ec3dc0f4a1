"""MAIL/RCPT addresses are quoted by aiosmtplib's own rules, once per address: an address that
would smuggle parameters or commands onto the line is still cut down to its mailbox, or
refused."""

from __future__ import annotations

import pytest
from aiosmtplib.email import quote_address

from mail_proxy_sender.delivery.smtp_client import _quoted


@pytest.mark.parametrize(
    "address", ["a@example.org", "Ann <a@example.org>", '"odd local"@example.org', "ü@exämple.org"]
)
def test_quoting_is_aiosmtplibs(address: str) -> None:
    assert _quoted(address) == quote_address(address)
    assert _quoted(address) == quote_address(address)  # the memoised answer is the same


@pytest.mark.parametrize(
    "address",
    [
        "a@example.org> SIZE=1",
        "a@example.org>\r\nRCPT TO:<b@example.org",
        "a@example.org\nDATA",
        "a b@example.org",
    ],
)
def test_an_address_that_would_inject_never_reaches_the_line(address: str) -> None:
    for _ in range(2):  # the memoised answer is the library's, refusals included
        try:
            quoted = _quoted(address)
        except ValueError:
            with pytest.raises(ValueError, match="not permitted"):
                quote_address(address)
            continue
        assert quoted == quote_address(address)
        inner = quoted[1:-1]
        assert quoted.startswith("<")
        assert quoted.endswith(">")
        assert not any(c in inner for c in "<>\r\n ")
