"""One rule per id (tenant, account, message), used by the API, the CLI, the operator and the
CRDs alike (issue 9: id patterns were copied across modules)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mail_proxy.ids import (
    ACCOUNT_ID_PATTERN,
    MESSAGE_ID_PATTERN,
    TENANT_ID_PATTERN,
    valid_account_id,
    valid_message_id,
    valid_tenant_id,
)
from mail_proxy_api.schemas.accounts import AccountPayload
from mail_proxy_api.schemas.tenants import TenantPayload
from mail_proxy_operator.specs import SmtpAccountSpec, TenantSpec

CRDS = Path(__file__).resolve().parents[3] / "crds"


def _spec_properties(name: str) -> dict[str, dict[str, object]]:
    crd = yaml.safe_load((CRDS / name).read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    properties: dict[str, dict[str, object]] = schema["properties"]["spec"]["properties"]
    return properties


@pytest.mark.parametrize(
    ("valid", "good", "bad"),
    [
        (valid_tenant_id, ["acme", "a-b_C9", "x" * 64], ["", "a b", "a.b", "x" * 65, "é", 7]),
        (
            valid_account_id,
            ["smtp1", "mail.example.org", "ü@x", "x" * 128],
            ["", "a b", "a/b", "a\tb", "a\x00", "x" * 129, None],
        ),
        (
            valid_message_id,
            ["m1", "with space ok", "ü", "x" * 255],
            ["", "a\r\nb", "a\x00", "a\x7f", "x" * 256, 3],
        ),
    ],
)
def test_each_rule(valid: object, good: list[object], bad: list[object]) -> None:
    assert callable(valid)
    assert all(valid(v) for v in good)
    assert not any(valid(v) for v in bad)


def test_the_crds_use_the_same_patterns() -> None:
    tenant = _spec_properties("tenants.yaml")["tenantId"]
    assert tenant["pattern"] == TENANT_ID_PATTERN
    account = _spec_properties("smtpaccounts.yaml")["accountId"]
    assert account["pattern"] == ACCOUNT_ID_PATTERN
    crd = (CRDS / "tenants.yaml").read_text()
    assert f"matches('{TENANT_ID_PATTERN}')" in crd  # the CEL rule for metadata.name


def test_api_models_and_operator_specs_use_them() -> None:
    def pattern(model: type, field: str) -> str:
        schema = model.model_json_schema(by_alias=False)  # type: ignore[attr-defined]
        prop = schema["properties"][field]
        found = prop.get("pattern") or next(
            (p["pattern"] for p in prop.get("anyOf", []) if "pattern" in p), None
        )
        assert isinstance(found, str)
        return found

    assert pattern(TenantPayload, "id") == TENANT_ID_PATTERN
    assert pattern(AccountPayload, "id") == ACCOUNT_ID_PATTERN
    assert pattern(AccountPayload, "tenant_id") == TENANT_ID_PATTERN
    assert pattern(TenantSpec, "tenant_id") == TENANT_ID_PATTERN
    assert pattern(SmtpAccountSpec, "account_id") == ACCOUNT_ID_PATTERN
    assert MESSAGE_ID_PATTERN.startswith("^")
