"""The webhook event-type list covers every event the service stores or fans out."""

from __future__ import annotations

from pathlib import Path

from mail_proxy.event_types import (
    MESSAGE_EVENT_TYPES,
    RECIPIENT_EVENT_TYPES,
    WEBHOOK_EVENT_TYPES,
    unknown_event_type,
)
from mail_proxy.inbound.pec import RECEIPT_EVENTS
from mail_proxy.states import MessageState

MIGRATIONS = Path(__file__).parents[3] / "core" / "mail_proxy" / "db" / "migrations"


def test_every_emitted_event_is_listed() -> None:
    assert set(RECEIPT_EVENTS.values()) <= set(MESSAGE_EVENT_TYPES)
    outcomes = {MessageState.SENT, MessageState.DEFERRED, MessageState.ERROR}
    assert {str(s) for s in outcomes} <= set(MESSAGE_EVENT_TYPES)
    fanout = (MIGRATIONS / "0015_recipient_webhooks.sql").read_text()
    for name in RECIPIENT_EVENT_TYPES:
        assert f"'{name}'" in fanout


def test_unknown_names_are_refused_with_the_valid_list() -> None:
    assert all(unknown_event_type(name) is None for name in WEBHOOK_EVENT_TYPES)
    problem = unknown_event_type("nonsense")
    assert problem is not None
    assert problem.startswith("unknown event type 'nonsense'; valid event types: sent, ")
    long_problem = unknown_event_type("x" * 1000)
    assert long_problem is not None
    assert len(long_problem) < 500
