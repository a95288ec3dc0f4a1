"""Addresses, recipients, priorities and the per-message checks made at enqueue."""

from __future__ import annotations

from typing import Any

import pytest

from mail_proxy.addresses import address_of, split_recipients
from mail_proxy.encryption import SecretBox, decode_key, generate_key
from mail_proxy.intake import rejection_reason
from mail_proxy.priorities import normalise_priority
from mail_proxy.redact import MASK, open_client_auth, redact, seal_client_auth


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("user@example.org", "user@example.org"),
        ("  user@example.org ", "user@example.org"),
        ("First.Last+tag@sub.example.co.uk", "First.Last+tag@sub.example.co.uk"),
        ("Jane Doe <jane@example.org>", "jane@example.org"),
        ('"Doe, Jane" <jane@example.org>', "jane@example.org"),
        ("<jane@example.org>", "jane@example.org"),
        ("user@[192.0.2.1]", "user@[192.0.2.1]"),
        ("user", None),
        ("user@", None),
        ("@example.org", None),
        ("user@localhost", None),
        ("a@@example.org", None),
        (".user@example.org", None),
        ("us..er@example.org", None),
        ("user@exa mple.org", None),
        ("Jane <jane@example.org", None),
        ("a@example.org\r\nBcc: b@example.org", None),
        ("a@example.org\n", None),
        ("Name\r\n<a@example.org>", None),
        ("x" * 250 + "@example.org", None),
    ],
)
def test_address_syntax(value: str, address: str | None) -> None:
    assert address_of(value) == address


@pytest.mark.parametrize(
    ("value", "recipients"),
    [
        (None, []),
        ("", []),
        ("a@example.org", ["a@example.org"]),
        ("a@example.org, b@example.org", ["a@example.org", "b@example.org"]),
        (
            ["a@example.org", "b@example.org,c@example.org"],
            ["a@example.org", "b@example.org", "c@example.org"],
        ),
        ("a@example.org, B <b@example.org>", ["a@example.org", "B <b@example.org>"]),
        ('"Doe, J" <j@example.org>, k@example.org', ['"Doe, J" <j@example.org>', "k@example.org"]),
        (["  ", ""], []),
    ],
)
def test_recipient_lists_split_on_commas_outside_names(value: Any, recipients: list[str]) -> None:
    assert split_recipients(value) == recipients


@pytest.mark.parametrize(
    ("value", "default", "priority"),
    [
        (0, 2, 0),
        (3, 2, 3),
        (7, 2, 3),
        (-1, 2, 0),
        ("immediate", 2, 0),
        ("High", 2, 1),
        (" medium ", 0, 2),
        ("low", 2, 3),
        ("2", 0, 2),
        ("-5", 2, 0),
        ("urgent", 1, 1),
        (None, 3, 3),
        (True, 2, 2),
        (1.5, 2, 2),
    ],
)
def test_priorities(value: object, default: int, priority: int) -> None:
    assert normalise_priority(value, default) == priority


def _message(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "m1",
        "tenant_id": "acme",
        "account_id": "smtp1",
        "from": "a@example.org",
        "to": ["b@example.org"],
        "subject": "Hi",
    }
    return {**base, **fields}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, None),
        ({"id": ""}, "missing id"),
        ({"id": "", "tenant_id": ""}, "missing id"),
        ({"tenant_id": ""}, "missing tenant_id"),
        ({"account_id": None}, "missing account_id"),
        ({"from": ""}, "missing from"),
        ({"to": []}, "missing to"),
        # RFC 5322 3.6.3: To may be empty when Cc or Bcc names a recipient.
        ({"to": [], "cc": ["c@example.org"]}, None),
        ({"to": "", "bcc": "b@example.org"}, None),
        ({"to": [], "cc": [], "bcc": []}, "missing to"),
        ({"subject": ""}, "missing subject"),
        ({"to": ["nope"]}, "invalid address in to: 'nope'"),
        ({"reply_to": "r@example.org\n"}, "line break in reply_to"),
        ({"bcc": ["Eve\r\n<e@example.org>"]}, "line break in bcc"),
        ({"batch_code": "B\r1"}, "line break in batch_code"),
        ({"headers": {"X-Ok": None}}, None),
        ({"headers": {"X-Num": 5}}, None),
        ({"headers": {"X-Bad": "a\nb"}}, "line break in header 'X-Bad'"),
        # Other control characters than HTAB never reach a header (RFC 5322 section 2.2).
        ({"subject": "A\x0bB"}, "control character in subject"),
        ({"subject": "tab\tok"}, None),
        ({"subject": "del\x7f"}, "control character in subject"),
        ({"subject": "c1\x85"}, "control character in subject"),
        ({"headers": {"X-C": "csi\x9b"}}, "control character in header 'X-C'"),
        ({"subject": "ls\u2028"}, "control character in subject"),
        ({"subject": "Bücher ünd Ärger"}, None),
        ({"from": "A\x1fB <a@example.org>"}, "control character in from"),
        ({"to": ["X\x0c <x@example.org>"]}, "control character in to"),
        ({"headers": {"X-C": "a\x01b"}}, "control character in header 'X-C'"),
        ({"message_id": "<id\x08@example.org>"}, "control character in message_id"),
        # RFC 5322 section 3.6.4: a message id has an @.
        ({"message_id": "no-brackets"}, "invalid message_id: 'no-brackets'"),
        ({"message_id": "<a@b.example>"}, None),
        ({"message_id": "a@b.example"}, None),
        # Counted before any address is validated.
        (
            {"to": [f"r{i}@example.org" for i in range(800)], "cc": ["x"] * 201},
            "too many recipients: 1001 (at most 1000)",
        ),
        ({"to": [f"r{i}@example.org" for i in range(1000)]}, None),
    ],
    ids=repr,
)
def test_rejection_reasons_in_the_reference_order(
    fields: dict[str, Any], reason: str | None
) -> None:
    assert rejection_reason(_message(**fields)) == reason


def test_redact_masks_secrets_at_any_depth_and_keeps_the_rest() -> None:
    value = {
        "password": "p",
        "user": "u",
        "empty": {"password": ""},
        "nested": [{"auth": {"token": "t", "method": "bearer"}}],
        "api_token": None,
    }
    assert redact(value) == {
        "password": MASK,
        "user": "u",
        "empty": {"password": ""},
        "nested": [{"auth": {"token": MASK, "method": "bearer"}}],
        "api_token": None,
    }
    assert value["password"] == "p"  # a copy, not in place


def test_client_auth_is_sealed_and_opened() -> None:
    box = SecretBox(decode_key(generate_key()))
    sealed = seal_client_auth(box, {"method": "basic", "user": "u", "password": "pw"})
    assert sealed is not None
    assert sealed["user"] == "u"
    assert sealed["password"].startswith("ENC:")
    assert open_client_auth(box, sealed) == {"method": "basic", "user": "u", "password": "pw"}
    # A masked value sent back keeps what was stored.
    again = seal_client_auth(box, {"method": "basic", "user": "u", "password": MASK}, sealed)
    assert again is not None
    assert again["password"] == sealed["password"]
