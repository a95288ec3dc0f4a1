"""Every operation documents the error statuses it can answer, with the shared error body. A new
route missing from `mail_proxy_api/openapi_errors.OPERATION_ERRORS` fails here."""

from typing import Any

import pytest
from pydantic import ValidationError

from mail_proxy.config import Settings
from mail_proxy.encryption import SecretBox
from mail_proxy.metrics import Metrics
from mail_proxy_api.app import create_app
from mail_proxy_api.context import ApiContext
from mail_proxy_api.openapi_errors import OPERATION_ERRORS, ErrorBody


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    ctx = ApiContext(settings=Settings(), pool=None, box=SecretBox(None), metrics=Metrics())  # type: ignore[arg-type]
    return create_app(ctx).openapi()


def _operations(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    ]


def test_every_operation_is_in_the_error_table(spec: dict[str, Any]) -> None:
    keys = {key for key, _ in _operations(spec)}
    assert sorted(keys - OPERATION_ERRORS.keys()) == [], "add them to OPERATION_ERRORS"
    assert sorted(OPERATION_ERRORS.keys() - keys) == [], "no such operation any more"


def test_token_operations_document_the_common_codes(spec: dict[str, Any]) -> None:
    missing = []
    for key, op in _operations(spec):
        needed = {"422"} if op.get("parameters") or op.get("requestBody") else set()
        if any("APIKeyHeader" in s for s in op.get("security", [])):
            needed |= {"401", "503"}
        if "requestBody" in op:
            needed |= {"413"}
        missing += [f"{key}: {code}" for code in sorted(needed - op["responses"].keys())]
    assert missing == []


def test_error_answers_use_the_shared_body(spec: dict[str, Any]) -> None:
    assert spec["components"]["schemas"]["ErrorBody"]["required"] == ["detail"]
    for key, op in _operations(spec):
        for code, response in op["responses"].items():
            if code.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (key, code)


def test_the_body_admits_both_shapes_the_handlers_write() -> None:
    ErrorBody.model_validate({"detail": "Tenant 'x' not found"})
    ErrorBody.model_validate({"detail": [{"loc": ["body", "id"], "msg": "m", "type": "t"}]})
    ErrorBody.model_validate({"detail": {"error": None, "rejected": [{"id": "a", "reason": "r"}]}})
    with pytest.raises(ValidationError, match="detail"):
        ErrorBody.model_validate({"error": "x"})
