"""The operator's `resources` gauge counts each resource once, under its current Ready reason."""

from __future__ import annotations

from mail_proxy_operator.metrics import OperatorMetrics


def _value(metrics: OperatorMetrics, *labels: str) -> float | None:
    return metrics.registry.get_sample_value(
        "mail_proxy_operator_resources", dict(zip(("kind", "ready", "reason"), labels, strict=True))
    )


def test_a_resource_moves_between_reasons_and_is_forgotten_when_deleted() -> None:
    metrics = OperatorMetrics()
    metrics.set_ready("u1", "Tenant", "True", "Reconciled")
    metrics.set_ready("u2", "Tenant", "True", "Reconciled")
    metrics.set_ready("u1", "Tenant", "False", "DatabaseUnavailable")
    metrics.set_ready("u1", "Tenant", "False", "DatabaseUnavailable")  # no double count
    assert _value(metrics, "Tenant", "True", "Reconciled") == 1
    assert _value(metrics, "Tenant", "False", "DatabaseUnavailable") == 1
    metrics.forget("u1")
    metrics.forget("u1")
    assert _value(metrics, "Tenant", "False", "DatabaseUnavailable") == 0
