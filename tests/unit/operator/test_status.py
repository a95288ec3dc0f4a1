"""The Ready condition, back-off and error types, as `kubectl describe` will show them."""

from __future__ import annotations

import pytest

from mail_proxy.db.managed import Figures
from mail_proxy_operator.errors import (
    InvalidSpec,
    OwnedElsewhere,
    PermanentReconcileError,
    SecretNotReady,
    TemporaryReconcileError,
    TenantNotReady,
    retry_delay_seconds,
)
from mail_proxy_operator.reconcile import parse_spec
from mail_proxy_operator.status import (
    conditions_with_ready,
    failed_status,
    figures_status,
    ready_condition,
    ready_status,
    unknown_status,
)


def test_transition_time_moves_only_when_the_status_value_changes() -> None:
    first = conditions_with_ready(
        None, ready=False, reason="SecretNotFound", message="m1", generation=1, now="T1"
    )
    same = conditions_with_ready(
        first, ready=False, reason="TenantNotReady", message="m2", generation=1, now="T2"
    )
    flipped = conditions_with_ready(
        same, ready=True, reason="Reconciled", message="ok", generation=2, now="T3"
    )
    assert first[0]["lastTransitionTime"] == "T1"
    assert same[0]["lastTransitionTime"] == "T1"
    assert same[0]["reason"] == "TenantNotReady"
    assert flipped[0] == {
        "type": "Ready",
        "status": "True",
        "reason": "Reconciled",
        "message": "ok",
        "lastTransitionTime": "T3",
        "observedGeneration": 2,
    }


def test_other_condition_types_are_kept() -> None:
    previous = [{"type": "Degraded", "status": "False"}]
    result = conditions_with_ready(
        previous, ready=True, reason="Reconciled", message="ok", generation=1
    )
    assert [c["type"] for c in result] == ["Degraded", "Ready"]


def test_ready_and_failed_status() -> None:
    ok = ready_status(None, generation=3, message="fine", extra={"pending": 2})
    assert ok["observedGeneration"] == 3
    assert ok["pending"] == 2
    assert ready_condition(ok) is not None
    bad = failed_status(ok, generation=4, reason="Conflict", message="taken")
    condition = ready_condition(bad)
    assert condition is not None
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "False",
        "Conflict",
        "taken",
    )
    assert bad["pending"] is None  # a figure is cleared, never left stale after a failure


def test_a_new_or_paused_resource_is_ready_unknown() -> None:
    new = unknown_status(None, generation=1, reason="Reconciling", message="first reconcile")
    assert ready_condition(new)["status"] == "Unknown"  # type: ignore[index]
    paused = unknown_status(new, generation=1, reason="ReconciliationPaused", message="paused")
    assert [c["type"] for c in paused["conditions"]] == ["Ready", "ReconciliationPaused"]
    resumed = ready_status(paused, generation=1, message="fine", extra={})
    assert [c["type"] for c in resumed["conditions"]] == ["Ready"]


def test_figures_clear_a_previous_error() -> None:
    assert figures_status(
        Figures(pending=1, sent_last_hour=2, last_error=None, last_error_ts=None)
    ) == {
        "pending": 1,
        "sentLastHour": 2,
        "lastError": None,
        "lastErrorTime": None,
    }
    with_error = figures_status(Figures(0, 0, "550 no such user", 0))
    assert with_error["lastErrorTime"] == "1970-01-01T00:00:00Z"


def test_temporary_and_permanent_are_types() -> None:
    assert isinstance(SecretNotReady("x"), TemporaryReconcileError)
    assert isinstance(InvalidSpec("x"), PermanentReconcileError)
    assert [retry_delay_seconds(TenantNotReady("x"), n) for n in range(4)] == [5, 10, 20, 40]
    assert retry_delay_seconds(TenantNotReady("x"), 30) == 300
    # A missing Secret is looked for again within seconds, however long it has been missing.
    assert [retry_delay_seconds(SecretNotReady("x"), n) for n in range(5)] == [1, 2, 4, 5, 5]
    assert retry_delay_seconds(OwnedElsewhere("x"), 0) == 30


def test_a_spec_the_model_refuses_is_an_invalid_spec_naming_the_field() -> None:
    with pytest.raises(InvalidSpec, match=r"port: Input should be less than or equal to 65535"):
        parse_spec("SmtpAccount", {"tenantRef": {"name": "t"}, "host": "h", "port": 70000})
