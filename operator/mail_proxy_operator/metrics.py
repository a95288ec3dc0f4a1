# SPDX-License-Identifier: Apache-2.0
"""The operator's own Prometheus families (`mail_proxy_operator_*`), one registry per process.

Reconciles (by kind and trigger), their failures (by reason) and durations, drift repairs,
resources by Ready status and reason, database reachability, leadership, and stored secrets not
yet under the primary encryption key. Served on the health port at `/metrics`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class OperatorMetrics:
    """Every family the operator exports, registered on `self.registry`."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        prefix = "mail_proxy_operator"
        self.reconciles = Counter(
            f"{prefix}_reconciles",
            "Reconciles run, by kind and trigger (change, repair, delete)",
            ("kind", "trigger"),
            registry=r,
        )
        self.errors = Counter(
            f"{prefix}_reconcile_errors",
            "Reconciles that failed, by kind and Ready reason",
            ("kind", "reason"),
            registry=r,
        )
        self.duration = Histogram(
            f"{prefix}_reconcile_duration_seconds",
            "Time one reconcile took",
            ("kind",),
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.drift_repairs = Counter(
            f"{prefix}_drift_repairs",
            "Rows put back after they were changed behind the operator's back",
            ("kind",),
            registry=r,
        )
        self.resources = Gauge(
            f"{prefix}_resources",
            "Resources handled by this operator, by kind, Ready status and reason",
            ("kind", "ready", "reason"),
            registry=r,
        )
        self.database_up = Gauge(
            f"{prefix}_database_up", "1 while Postgres answers, 0 during an outage", registry=r
        )
        self.leader = Gauge(
            f"{prefix}_leader", "1 while this replica holds the leader Lease", registry=r
        )
        self.stale_secrets = Gauge(
            f"{prefix}_secrets_under_old_keys",
            "Stored rows with a secret not yet under the primary encryption key",
            registry=r,
        )
        self._ready: dict[str, tuple[str, str, str]] = {}

    def set_ready(self, uid: str, kind: str, ready: str, reason: str) -> None:
        """Record a resource's Ready status and reason (the `resources` gauge follows)."""
        old = self._ready.get(uid)
        if old == (kind, ready, reason):
            return
        if old is not None:
            self.resources.labels(*old).dec()
        self._ready[uid] = (kind, ready, reason)
        self.resources.labels(kind, ready, reason).inc()

    def forget(self, uid: str) -> None:
        old = self._ready.pop(uid, None)
        if old is not None:
            self.resources.labels(*old).dec()
