"""The SMTP reply code a bounce quotes, as shown for the bounced recipient."""

from __future__ import annotations

import pytest

from mail_proxy.db.bounced_recipients import reply_code


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("550 5.1.1 User unknown", 550),
        ("smtp; 550 5.1.1 <gone@example.com>: Recipient address rejected", 550),
        ("host mx.example.com said: 452-4.2.2 Mailbox full", 452),
        ("5.1.1 User unknown", None),  # an enhanced status is not a reply code
        ("Status: 5.5.0", None),
        ("error 55012 in queue 4501", None),  # digits inside longer numbers
        ("250 OK then 554 rejected", 554),  # only failures (4xx/5xx)
        ("", None),
        (None, None),
    ],
)
def test_reply_code(reason: str | None, code: int | None) -> None:
    assert reply_code(reason) == code
