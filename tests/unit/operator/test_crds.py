"""The CRDs in crds/ and the operator's spec models describe the same fields and defaults."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from mail_proxy_operator.specs import GROUP, KINDS, VERSION

CRDS = Path(__file__).resolve().parents[3] / "crds"


def _crd(kind: str) -> dict[str, Any]:
    for path in CRDS.glob("*.yaml"):
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
        if doc["spec"]["names"]["kind"] == kind:
            return doc
    raise AssertionError(f"no CRD for {kind}")


def _version(kind: str) -> dict[str, Any]:
    (version,) = _crd(kind)["spec"]["versions"]
    assert version["name"] == VERSION
    return dict(version)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `X | None`, or None for plain values."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        for arg in typing.get_args(annotation):
            if (model := _model_of(arg)) is not None:
                return model
    return None


def _compare(model: type[BaseModel], schema: dict[str, Any], where: str) -> list[str]:
    problems = []
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    properties = schema.get("properties", {})
    for missing in sorted(set(properties) ^ set(fields)):
        side = "schema only" if missing in properties else "model only"
        problems.append(f"{where}.{missing}: {side}")
    for name in sorted(set(properties) & set(fields)):
        prop, field = properties[name], fields[name]
        nested = _model_of(field.annotation)
        if prop.get("type") == "object" and "properties" in prop:
            if nested is None:
                problems.append(f"{where}.{name}: object in the schema, not a model")
            else:
                problems.extend(_compare(nested, prop, f"{where}.{name}"))
        if "default" in prop and nested is None and field.default != prop["default"]:
            problems.append(
                f"{where}.{name}: default {prop['default']!r} in the schema, "
                f"{field.default!r} in the model"
            )
    return problems


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_schema_and_model_agree(kind: str) -> None:
    schema = _version(kind)["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert _compare(KINDS[kind][1], schema, "spec") == []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_crd_has_status_conditions_and_printer_columns(kind: str) -> None:
    crd = _crd(kind)
    plural = KINDS[kind][0]
    assert crd["metadata"]["name"] == f"{plural}.{GROUP}"
    assert crd["spec"]["group"] == GROUP
    assert crd["spec"]["names"]["plural"] == plural
    version = _version(kind)
    assert version["subresources"] == {"status": {}}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"observedGeneration", "conditions", "pending", "sentLastHour"} <= set(status)
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Pending"] == ".status.pending"
    assert columns["Age"] == ".metadata.creationTimestamp"
    assert version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "deletionPolicy"
    ] == {
        **version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
            "deletionPolicy"
        ],
        "enum": ["Delete", "Retain"],
        "default": "Delete",
    }


def test_every_example_parses_with_its_model() -> None:
    seen = set()
    for path in (CRDS / "examples").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] in KINDS:
                assert doc["apiVersion"] == f"{GROUP}/{VERSION}"
                KINDS[doc["kind"]][1].model_validate(doc["spec"])
                seen.add(doc["kind"])
    assert seen == set(KINDS)
