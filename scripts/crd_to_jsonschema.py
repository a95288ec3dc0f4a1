"""Write the JSON schemas kubeconform validates the chart's rendered objects against, offline.

Two sources, one output folder:

* CRD YAML files (`crds/*.yaml`, and the stand-ins for ServiceMonitor/ScaledObject in
  `charts/mail-proxy/ci/stub-crds/`): one schema per served version, from `openAPIV3Schema`.
* An API server's OpenAPI v2 document (`/openapi/v2`) for the built-in kinds, so validation
  matches the exact Kubernetes version under test. The definitions go to `_definitions.json`;
  each kind's file is a `$ref` into it.

Files are named as kubeconform's template
`{{ .ResourceKind }}-{{ .Group }}-{{ .ResourceAPIVersion }}.json` expects: kind lowercased, the
full API group (`v1` for the core group, as kubeconform does), the version.

Schemas are strict, like kubeconform's `-strict` schema sets: an object that lists its
properties rejects any other (unless the schema preserves unknown fields), so a misspelt field
in a template fails the check instead of being silently dropped by the API server.

    python scripts/crd_to_jsonschema.py -o DIR [--openapi FILE] [CRD.yaml ...]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Schema = dict[str, Any]
DEFINITIONS_FILE = "_definitions.json"
_INT_OR_STRING: Schema = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
_QUANTITY: Schema = {"anyOf": [{"type": "string"}, {"type": "number"}]}


def schema_file_name(kind: str, group: str, version: str) -> str:
    """kubeconform's `{{ .ResourceKind }}-{{ .Group }}-{{ .ResourceAPIVersion }}.json`."""
    return f"{kind.lower()}-{group or version}-{version}.json"


def _allow_null(schema: Schema) -> None:
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]


def strict(schema: Schema, *, nullable_key: str | None) -> Schema:
    """A copy of an OpenAPI schema as a strict JSON schema (see the module docstring).

    `nullable_key` is the keyword that marks a field as accepting null (`nullable` in CRDs);
    None makes every optional field accept null, as the API server does for built-in kinds.
    """
    out: Schema = copy.deepcopy(schema)
    _strict_in_place(out, nullable_key=nullable_key, top=True)
    return out


def _strict_in_place(schema: Schema, *, nullable_key: str | None, top: bool = False) -> None:
    if schema.get("x-kubernetes-int-or-string") or schema.get("format") == "int-or-string":
        for key in ("type", "format", "x-kubernetes-int-or-string"):
            schema.pop(key, None)
        schema.update(copy.deepcopy(_INT_OR_STRING))
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in schema and "additionalProperties" not in schema and not preserve:
        schema["additionalProperties"] = False
    if not top and (schema.get(nullable_key) is True if nullable_key else True):
        _allow_null(schema)
    for child in (schema.get("properties") or {}).values():
        _strict_in_place(child, nullable_key=nullable_key)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _strict_in_place(schema[key], nullable_key=nullable_key)
    for key in ("allOf", "anyOf", "oneOf"):
        for child in schema.get(key) or []:
            _strict_in_place(child, nullable_key=nullable_key, top=True)


def crd_schemas(crd: Schema) -> Iterator[tuple[str, Schema]]:
    """(file name, schema) for every served version of one CRD."""
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        source = version.get("schema", {}).get("openAPIV3Schema")
        if source is None:
            raise ValueError(f"{kind} {version['name']} has no openAPIV3Schema")
        schema = strict(source, nullable_key="nullable")
        # Every object carries these even when the CRD's schema leaves them out.
        properties = schema.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties.setdefault("metadata", {"type": "object"})
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        yield schema_file_name(kind, group, version["name"]), schema


def openapi_schemas(document: Schema) -> Iterator[tuple[str, Schema]]:
    """(file name, schema) for the shared definitions and for every kind of an OpenAPI v2 doc."""
    definitions: dict[str, Schema] = {}
    for name, source in document["definitions"].items():
        if name.endswith(".Quantity"):
            definitions[name] = {**copy.deepcopy(_QUANTITY), "description": "quantity"}
        else:
            definitions[name] = strict(source, nullable_key=None)
    yield DEFINITIONS_FILE, {"definitions": definitions}
    for name, source in document["definitions"].items():
        for gvk in source.get("x-kubernetes-group-version-kind", []):
            ref = {"$ref": f"{DEFINITIONS_FILE}#/definitions/{name}"}
            yield schema_file_name(gvk["kind"], gvk["group"], gvk["version"]), ref


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder to write")
    parser.add_argument("--openapi", type=Path, help="an API server's /openapi/v2 (JSON)")
    parser.add_argument("crds", type=Path, nargs="*", help="CRD YAML files")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    written = 0
    # Built-in kinds first, so a CRD file given explicitly wins over the server's copy of it.
    if args.openapi is not None:
        for name, schema in openapi_schemas(json.loads(args.openapi.read_text())):
            (args.output / name).write_text(json.dumps(schema), encoding="utf-8")
            written += 1
    for path in args.crds:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            for name, schema in crd_schemas(doc):
                (args.output / name).write_text(json.dumps(schema, indent=1), encoding="utf-8")
                written += 1
    sys.stderr.write(f"wrote {written} schema files to {args.output}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
