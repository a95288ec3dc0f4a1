"""The Grafana dashboard queries metric families the service really exports, the right way.

Every `gmp_*` series in a panel must exist in `mail_proxy.metrics.Metrics` with the suffix its
type produces (`_total` for counters, `_bucket`/`_sum`/`_count` for histograms), counters only
under rate()/increase(), buckets only under histogram_quantile(), and only labels the family has.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from mail_proxy.metrics import Metrics
from mail_proxy_operator.metrics import OperatorMetrics

from .chart_paths import CHART

DASHBOARD = CHART / "dashboards" / "mail-proxy.json"
SERIES = re.compile(r"\b((?:gmp|mail_proxy_operator)_[a-z0-9_]+)(\{[^}]*\})?")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
# Added by Prometheus to every scraped series (ServiceMonitor target labels).
TARGET_LABELS = {"namespace", "pod", "service", "job", "instance", "container", "endpoint"}

# What the issue asks the dashboard to show.
REQUIRED_FAMILIES = {
    "gmp_sent",
    "gmp_errors",
    "gmp_deferred",
    "gmp_rate_limited",
    "gmp_pending_messages",
    "gmp_pending_by_tenant_priority",
    "gmp_queue_age_seconds",
    "gmp_oldest_pending_seconds",
    "gmp_smtp_send_seconds",
    "gmp_sync_success",
    "gmp_sync_failure",
    # bounces, PEC receipts and suppression (issue 11)
    "gmp_bounces",
    "gmp_bounces_uncorrelated",
    "gmp_pec_events",
    "gmp_suppressed_recipients",
    "gmp_suppression_entries",
    "gmp_mailbox_last_success_timestamp_seconds",
    # the operator's row (issue 16)
    "mail_proxy_operator_reconciles",
    "mail_proxy_operator_reconcile_errors",
    "mail_proxy_operator_reconcile_duration_seconds",
    "mail_proxy_operator_resources",
    "mail_proxy_operator_drift_repairs",
    "mail_proxy_operator_database_up",
}


class Family:
    def __init__(self, name: str, kind: str, labels: tuple[str, ...]) -> None:
        self.name, self.kind, self.labels = name, kind, set(labels)


def _families() -> dict[str, Family]:
    """Series name → its family, for every family registered by `Metrics`."""
    series: dict[str, Family] = {}
    for metric in [*vars(Metrics()).values(), *vars(OperatorMetrics()).values()]:
        if not isinstance(metric, MetricWrapperBase):
            continue
        (described,) = metric.describe()
        family = Family(described.name, described.type, metric._labelnames)
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        for suffix in suffixes.get(family.kind, [""]):
            series[family.name + suffix] = family
    return series


FAMILIES = _families()


def _panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def _expressions() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in _panels() for target in panel["targets"]]


def test_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "mail-proxy"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {var["name"] for var in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "tenant"} <= variables
    for panel in _panels():
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, (panel["title"], used - variables)


def test_chart_ships_this_file() -> None:
    template = (CHART / "templates" / "grafana-dashboard.yaml").read_text()
    assert '.Files.Get "dashboards/mail-proxy.json"' in template


@pytest.mark.parametrize(("panel", "expr"), _expressions())
def test_every_series_exists_and_is_queried_as_its_type(panel: str, expr: str) -> None:
    found = SERIES.findall(expr)
    assert found, f"{panel}: no gmp_* series"
    in_expression: list[Family] = []
    for series, selector in found:
        assert series in FAMILIES, f"{panel}: {series} is not exported by mail_proxy.metrics"
        family = FAMILIES[series]
        in_expression.append(family)
        matchers = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
        unknown = matchers - family.labels - TARGET_LABELS
        assert not unknown, f"{panel}: {series} has no label {unknown}"
        if family.kind == "counter":
            assert re.search(rf"\b(rate|increase)\(\s*{series}\b", expr), f"{panel}: raw counter"
        if series.endswith("_bucket"):
            assert "histogram_quantile(" in expr, f"{panel}: buckets without a quantile"
    allowed = set().union(*(f.labels for f in in_expression)) | TARGET_LABELS
    if any(f.kind == "histogram" for f in in_expression):
        allowed.add("le")
    for grouping in GROUPING.findall(expr):
        labels = {label.strip() for label in grouping.split(",") if label.strip()}
        assert labels <= allowed, f"{panel}: grouping by unknown {labels - allowed}"


def test_dashboard_covers_the_required_families() -> None:
    used = {
        FAMILIES[series].name for _, expr in _expressions() for series, _ in SERIES.findall(expr)
    }
    assert REQUIRED_FAMILIES <= used, f"no panel for {REQUIRED_FAMILIES - used}"
