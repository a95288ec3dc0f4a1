"""Correlation tokens: stable, globally unique, unforgeable without the instance secret."""

from __future__ import annotations

from mail_proxy.inbound.correlation import find_tokens, message_token, verp_address
from mail_proxy.mime import build_message

SECRET = "s" * 64


def test_a_token_names_its_message_and_only_with_the_right_secret() -> None:
    token = message_token(SECRET, 123456789)
    assert token == message_token(SECRET, 123456789)
    assert token != message_token(SECRET, 123456790)
    assert find_tokens(SECRET, f"Message-ID: <{token}@example.org>") == [123456789]
    assert find_tokens(SECRET, f"x {token.upper()} y {token}") == [123456789]
    assert find_tokens("another secret", token) == []
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert find_tokens(SECRET, forged) == []


def test_verp_puts_the_token_in_the_local_part() -> None:
    token = message_token(SECRET, 42)
    address = verp_address("bounces@example.org", token)
    assert address == f"bounces+{token}@example.org"
    assert find_tokens(SECRET, address) == [42]


def test_the_built_message_carries_the_token_and_the_bounce_return_path() -> None:
    payload = {"id": "m1", "from": "a@example.org", "to": ["b@example.org"], "subject": "s"}
    token = message_token(SECRET, 7)
    wire = build_message(
        payload,
        [],
        tenant_id="t",
        message_pk=7,
        correlation_token=token,
        default_return_path="bounces@example.net",
    )
    assert f"X-Genro-Mail-Token: {token}".encode() in wire.data
    assert wire.message_id == f"<{token}@example.org>"
    assert wire.envelope_from == "bounces@example.net"
    # The client's own return_path and Message-ID win.
    wire = build_message(
        {**payload, "return_path": "own@example.org", "message_id": "<mine@example.org>"},
        [],
        tenant_id="t",
        message_pk=7,
        correlation_token=token,
        default_return_path="bounces@example.net",
    )
    assert wire.envelope_from == "own@example.org"
    assert wire.message_id == "<mine@example.org>"
    assert f"X-Genro-Mail-Token: {token}".encode() in wire.data
