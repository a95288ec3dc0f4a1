"""Copy the canonical CRDs (`crds/*.yaml`) into the Helm chart as templates.

Helm never upgrades files in a chart's `crds/` folder, so the chart renders the CRDs as ordinary
templates instead (as the cloudnative-pg chart does): each one behind `crds.install` and annotated
`helm.sh/resource-policy: keep`, so `helm uninstall` never deletes a CRD and with it every Tenant.

    python scripts/chart_crds.py          # (re)write charts/mail-proxy/templates/crds/
    python scripts/chart_crds.py --check  # exit 1 when the chart's copy differs from crds/

`tests/unit/chart/test_crds_in_sync.py` calls `expected_templates` and compares.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = ROOT / "crds"
TARGET_DIR = ROOT / "charts" / "mail-proxy" / "templates" / "crds"
KEEP = {"helm.sh/resource-policy": "keep"}


def render_template(source_name: str, text: str) -> str:
    """The chart template for one CRD file: the same objects, kept on uninstall, behind a flag."""
    if "{{" in text or "}}" in text:
        # Helm would read them as template actions; escaping them would change the CRD.
        raise ValueError(f"crds/{source_name} contains '{{{{' or '}}}}'")
    docs: list[dict[str, Any]] = [doc for doc in yaml.safe_load_all(text) if doc]
    if not docs:
        raise ValueError(f"crds/{source_name} holds no object")
    for doc in docs:
        if doc.get("kind") != "CustomResourceDefinition":
            raise ValueError(f"crds/{source_name}: {doc.get('kind')!r} is not a CRD")
        metadata = doc.setdefault("metadata", {})
        metadata["annotations"] = {**(metadata.get("annotations") or {}), **KEEP}
    body = yaml.safe_dump_all(docs, sort_keys=False, width=10_000, allow_unicode=True)
    return (
        f"{{{{- /* Generated from crds/{source_name} by `make chart-crds`; do not edit. */}}}}\n"
        "{{- if .Values.crds.install }}\n"
        f"{body}"
        "{{- end }}\n"
    )


def expected_templates(source_dir: Path = SOURCE_DIR) -> dict[str, str]:
    """File name → template text, for every `*.yaml` directly in `source_dir`."""
    return {
        path.name: render_template(path.name, path.read_text(encoding="utf-8"))
        for path in sorted(source_dir.glob("*.yaml"))
    }


def differences(source_dir: Path = SOURCE_DIR, target_dir: Path = TARGET_DIR) -> list[str]:
    """Names of chart templates that are missing, stale or left over."""
    expected = expected_templates(source_dir)
    present = {path.name for path in target_dir.glob("*.yaml")}
    wrong = [
        name
        for name, text in expected.items()
        if name not in present or (target_dir / name).read_text(encoding="utf-8") != text
    ]
    return sorted(wrong + sorted(present - expected.keys()))


def write(source_dir: Path = SOURCE_DIR, target_dir: Path = TARGET_DIR) -> list[str]:
    """Rewrite the chart's CRD templates; returns the names written or removed."""
    expected = expected_templates(source_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    changed = differences(source_dir, target_dir)
    for name in changed:
        if name in expected:
            (target_dir / name).write_text(expected[name], encoding="utf-8")
        else:
            (target_dir / name).unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report differences")
    args = parser.parse_args(argv)
    if args.check:
        stale = differences()
        for name in stale:
            sys.stderr.write(
                f"charts/mail-proxy/templates/crds/{name} differs from crds/: make chart-crds\n"
            )
        return 1 if stale else 0
    for name in write():
        sys.stdout.write(f"updated charts/mail-proxy/templates/crds/{name}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
