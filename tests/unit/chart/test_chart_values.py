"""values.yaml, values.schema.json, the chart README and the application agree.

helm lint (in `make chart-check`) validates values against the schema; these tests catch the
drift helm cannot see: a value missing from the schema or the README, or an environment
variable the templates set that no `Settings` field reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml

from mail_proxy.config import Settings
from mail_proxy.encryption import KEY_ENV

from .chart_paths import CHART

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
README = (CHART / "README.md").read_text()


def _leaves(values: Any, schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of every value. The schema decides what one value is: an object it lists
    the properties of is walked into; anything else (resources, labels, affinity, a list) is
    one value. A key the schema does not list yields `!unknown:<path>`."""
    properties = schema.get("properties")
    if not isinstance(values, dict) or properties is None:
        yield prefix
        return
    for key, child in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if key in properties:
            yield from _leaves(child, properties[key], path)
        else:
            yield f"!unknown:{path}"


LEAVES = set(_leaves(VALUES, SCHEMA))


def test_schema_rejects_unknown_keys_everywhere_it_lists_them() -> None:
    def walk(node: dict[str, Any], path: str) -> Iterator[str]:
        if "properties" in node and node.get("additionalProperties") is not False:
            yield path or "<root>"
        for key, child in node.get("properties", {}).items():
            yield from walk(child, f"{path}.{key}" if path else key)
        if isinstance(node.get("items"), dict):
            yield from walk(node["items"], f"{path}[]")

    assert list(walk(SCHEMA, "")) == []


def test_every_value_is_in_the_schema() -> None:
    assert {path for path in LEAVES if path.startswith("!unknown:")} == set()


def test_every_value_is_documented_in_the_chart_readme() -> None:
    documented = set(re.findall(r"^\| `([^`]+)` \|", README, flags=re.MULTILINE))
    assert LEAVES - documented == set(), "add these to charts/mail-proxy/README.md"
    assert documented - LEAVES == set(), "the README documents values that do not exist"


def test_every_variable_the_templates_set_is_read_by_the_application() -> None:
    templates = (CHART / "templates").glob("*.*")
    text = "\n".join(path.read_text() for path in templates if path.suffix in {".yaml", ".tpl"})
    names = set(re.findall(r"- name: (GMP_[A-Z0-9_]+)", text))
    assert {"GMP_DATABASE_URL", "GMP_API_TOKEN", "GMP_SHUTDOWN_GRACE_SECONDS"} <= names
    fields = {name.upper() for name in Settings.model_fields}
    unread = {name for name in names if name.removeprefix("GMP_") not in fields}
    assert unread == set(), f"no Settings field reads {unread}"
    assert f"- name: {KEY_ENV}" in text


def test_the_sender_grace_period_outlasts_its_drain() -> None:
    # terminationGracePeriodSeconds 0 means drainSeconds + 15 (sender-deployment.yaml)
    sender = VALUES["sender"]
    assert sender["terminationGracePeriodSeconds"] in (0, *range(sender["drainSeconds"] + 1, 3600))
    assert sender["drainSeconds"] >= Settings().shutdown_grace_seconds
