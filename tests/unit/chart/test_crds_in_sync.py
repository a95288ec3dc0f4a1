"""The chart ships exactly the CRDs in `crds/`, kept on uninstall and behind `crds.install`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from .chart_paths import CHART, ROOT, load_script

chart_crds = load_script("chart_crds")
TEMPLATES = CHART / "templates" / "crds"


def _template_objects(text: str) -> list[dict]:
    lines = text.splitlines()
    # first line: the generated-file comment; second: the flag; last: its end
    assert lines[1] == "{{- if .Values.crds.install }}"
    assert lines[-1] == "{{- end }}"
    return [doc for doc in yaml.safe_load_all("\n".join(lines[2:-1])) if doc]


def test_chart_templates_equal_the_crds_folder() -> None:
    stale = chart_crds.differences()
    assert stale == [], f"run `make chart-crds`: {stale} differ from crds/"


def test_every_crd_is_in_the_chart_kept_and_unchanged() -> None:
    source = {
        doc["metadata"]["name"]: doc
        for path in sorted((ROOT / "crds").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }
    shipped = {
        doc["metadata"]["name"]: doc
        for path in sorted(TEMPLATES.glob("*.yaml"))
        for doc in _template_objects(path.read_text())
    }
    assert set(shipped) == set(source)
    assert len(source) >= 3  # MailProxyInstance, Tenant, SmtpAccount
    for name, doc in shipped.items():
        annotations = doc["metadata"].pop("annotations")
        assert annotations["helm.sh/resource-policy"] == "keep", name
        source[name]["metadata"].pop("annotations", None)
        assert doc == source[name], f"{name} differs from crds/"


def test_a_stale_or_leftover_copy_is_reported(tmp_path: Path) -> None:
    source, target = tmp_path / "crds", tmp_path / "templates"
    shutil.copytree(ROOT / "crds", source, ignore=shutil.ignore_patterns("examples"))
    assert chart_crds.write(source, target)  # first run writes every file
    assert chart_crds.differences(source, target) == []

    first = sorted(source.glob("*.yaml"))[0]
    first.write_text(first.read_text().replace("served: true", "served: false", 1))
    (target / "removed-kind.yaml").write_text("{{- if .Values.crds.install }}\n{{- end }}\n")
    assert chart_crds.differences(source, target) == sorted([first.name, "removed-kind.yaml"])

    chart_crds.write(source, target)
    assert chart_crds.differences(source, target) == []
    assert not (target / "removed-kind.yaml").exists()


def test_template_braces_in_a_crd_are_refused() -> None:
    crd = (ROOT / "crds" / "tenants.yaml").read_text()
    broken = crd.replace("description:", "description: '{{ not helm }}'", 1)
    with pytest.raises(ValueError, match=r"tenants\.yaml"):
        chart_crds.render_template("tenants.yaml", broken)
