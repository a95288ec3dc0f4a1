# SPDX-License-Identifier: Apache-2.0
"""The `status` stanza: the Ready condition, observedGeneration and the live figures.

Conditions follow the Kubernetes convention (`type`, `status`, `reason`, `message`,
`lastTransitionTime`, `observedGeneration`); the transition time moves only when the status
value changes. Messages come from `ReconcileError`s, which never carry a secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mail_proxy.db.managed import Figures

READY = "Ready"
PAUSED = "ReconciliationPaused"
MAX_MESSAGE_CHARS = 1024
# Live figures: cleared (null) when a reconcile fails, so no number outlives its source.
FIGURE_KEYS = ("pending", "sentLastHour", "lastError", "lastErrorTime", "accounts", "tenants")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch_to_time(ts: int | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_condition(status: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The current Ready condition of a status stanza, if any."""
    for condition in (status or {}).get("conditions") or []:
        if condition.get("type") == READY:
            return dict(condition)
    return None


def conditions_with_ready(
    previous: Sequence[Mapping[str, Any]] | None,
    *,
    ready: bool | None,
    reason: str,
    message: str,
    generation: int,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """`previous` conditions with Ready replaced (None: Unknown); other types are kept."""
    value = "Unknown" if ready is None else "True" if ready else "False"
    old = next((c for c in previous or [] if c.get("type") == READY), None)
    transition = (
        old["lastTransitionTime"]
        if old is not None and old.get("status") == value and old.get("lastTransitionTime")
        else now or _now()
    )
    condition = {
        "type": READY,
        "status": value,
        "reason": reason,
        "message": message[:MAX_MESSAGE_CHARS],
        "lastTransitionTime": transition,
        "observedGeneration": generation,
    }
    others = [dict(c) for c in previous or [] if c.get("type") not in (READY, PAUSED)]
    return [*others, condition]


def unknown_status(
    previous: Mapping[str, Any] | None, *, generation: int, reason: str, message: str
) -> dict[str, Any]:
    """Status of a resource not reconciled yet (new) or not at all (paused): Ready=Unknown."""
    conditions = conditions_with_ready(
        (previous or {}).get("conditions"),
        ready=None,
        reason=reason,
        message=message,
        generation=generation,
    )
    if reason == PAUSED:
        conditions.append(
            {
                "type": PAUSED,
                "status": "True",
                "reason": PAUSED,
                "message": message,
                "lastTransitionTime": _now(),
                "observedGeneration": generation,
            }
        )
    return {"conditions": conditions}


def ready_status(
    previous: Mapping[str, Any] | None, *, generation: int, message: str, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """Status after a successful reconcile: Ready=True and the resource's own fields."""
    return {
        **extra,
        "observedGeneration": generation,
        "conditions": conditions_with_ready(
            (previous or {}).get("conditions"),
            ready=True,
            reason="Reconciled",
            message=message,
            generation=generation,
        ),
    }


def failed_status(
    previous: Mapping[str, Any] | None, *, generation: int, reason: str, message: str
) -> dict[str, Any]:
    """Status after a failed reconcile: Ready=False with why; the figures are cleared."""
    shown = previous or {}
    return {
        **{key: None for key in FIGURE_KEYS if shown.get(key) is not None},
        "observedGeneration": generation,
        "conditions": conditions_with_ready(
            (previous or {}).get("conditions"),
            ready=False,
            reason=reason,
            message=message,
            generation=generation,
        ),
    }


def figures_status(figures: Figures) -> dict[str, Any]:
    """The live figures as status fields; an absent error clears the previous one (None)."""
    return {
        "pending": figures.pending,
        "sentLastHour": figures.sent_last_hour,
        "lastError": figures.last_error[:MAX_MESSAGE_CHARS] if figures.last_error else None,
        "lastErrorTime": _epoch_to_time(figures.last_error_ts),
    }
