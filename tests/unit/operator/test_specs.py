"""CR specs as the operator reads them, and the rows they ask for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mail_proxy.db import accounts as db_accounts
from mail_proxy.db import instance as db_instance
from mail_proxy.db import tenants as db_tenants
from mail_proxy_operator.specs import (
    ClientAuthSpec,
    LimitsSpec,
    MailProxyInstanceSpec,
    SmtpAccountSpec,
    TenantSpec,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "crds" / "examples"


def _example(kind: str) -> dict[str, Any]:
    for path in EXAMPLES.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == kind:
                spec: dict[str, Any] = doc["spec"]
                return spec
    raise AssertionError(f"no {kind} example")


def _secrets() -> dict[tuple[str, str], str]:
    values = {}
    for path in EXAMPLES.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "Secret":
                for key, value in doc["stringData"].items():
                    values[(doc["metadata"]["name"], key)] = value
    return values


def _values(
    spec: TenantSpec | SmtpAccountSpec | MailProxyInstanceSpec,
) -> dict[tuple[str, str], str]:
    known = _secrets()
    return {ref.address: known[ref.address] for ref in spec.secret_refs()}


def test_tenant_example_becomes_a_tenant_row() -> None:
    spec = TenantSpec.model_validate(_example("Tenant"))
    fields = spec.desired_fields(_values(spec))
    assert set(fields) == set(db_tenants.WRITABLE)
    assert spec.row_id("acme") == "acme"
    assert spec.api_key_secret("acme") == "acme-api-key"
    assert fields["name"] == "ACME Corporation"
    assert fields["client_auth"] == {"method": "bearer", "token": "change-me-client-token"}
    assert fields["rate_limits"] == {"hourly": 5000, "daily": 50000}
    assert fields["large_file_config"]["max_size_mb"] == 10
    assert fields["large_file_config"]["action"] == "warn"


def test_account_example_becomes_an_account_row() -> None:
    spec = SmtpAccountSpec.model_validate(_example("SmtpAccount"))
    fields = spec.desired_fields(_values(spec))
    assert set(fields) == set(db_accounts.WRITABLE)
    assert spec.row_id("acme-main") == "main"
    assert fields["password"] == "change-me-smtp-password"
    assert (fields["limit_per_minute"], fields["limit_per_hour"], fields["limit_per_day"]) == (
        60,
        1000,
        10000,
    )
    assert fields["use_tls"] is True
    assert fields["is_pec_account"] is False
    assert fields["imap_host"] is None


def test_instance_example_becomes_settings_and_config() -> None:
    spec = MailProxyInstanceSpec.model_validate(_example("MailProxyInstance"))
    values = _values(spec)
    fields = spec.desired_fields(values)
    assert set(fields) == set(db_instance.WRITABLE)
    assert fields["bounce_imap_password"] == "change-me-bounce-password"
    assert spec.desired_config(values) == {
        "max_retries": 5,
        "retry_delays_seconds": [60, 300, 900, 3600, 7200],
        "batch_size_per_account": 50,
        "report_retention_seconds": 604800,
        "client_sync_url": "https://reports.example/mail-proxy/sync",
        "client_sync_auth": {
            "method": "basic",
            "user": "mail-proxy",
            "password": "change-me-sync-password",
        },
    }


def test_an_empty_instance_spec_asks_for_the_schema_defaults() -> None:
    spec = MailProxyInstanceSpec()
    assert spec.desired_config({}) == {}
    assert spec.desired_fields({}) == {
        "name": "mail-proxy",
        "bounce_enabled": False,
        "bounce_imap_host": None,
        "bounce_imap_port": 993,
        "bounce_imap_user": None,
        "bounce_imap_password": None,
        "bounce_imap_folder": "INBOX",
        "bounce_imap_ssl": True,
        "bounce_poll_interval": 60,
        "bounce_return_path": None,
        "bounce_imap_starttls": False,
        "bounce_processed_action": "keep",
        "bounce_processed_folder": None,
    }


@pytest.mark.parametrize(
    ("tls", "port", "use_tls"),
    [("implicit", 465, True), ("starttls", 587, True), ("none", 25, False)],
)
def test_tls_mode_maps_to_the_senders_use_tls(tls: str, port: int, use_tls: bool) -> None:
    spec = SmtpAccountSpec.model_validate(
        {"tenantRef": {"name": "t"}, "host": "h", "port": port, "tls": tls}
    )
    assert spec.desired_fields({})["use_tls"] is use_tls


def test_pec_mailbox_defaults_to_the_smtp_credentials() -> None:
    spec = SmtpAccountSpec.model_validate(
        {
            "tenantRef": {"name": "t"},
            "host": "smtp.pec.example",
            "username": "me@pec.example",
            "passwordSecretRef": {"name": "smtp"},
            "pec": {"enabled": True, "imap": {"host": "imap.pec.example"}},
        }
    )
    fields = spec.desired_fields({("smtp", "password"): "pw"})
    assert fields["is_pec_account"] is True
    assert (fields["imap_host"], fields["imap_port"], fields["imap_user"]) == (
        "imap.pec.example",
        993,
        "me@pec.example",
    )
    assert fields["imap_password"] == "pw"
    assert (fields["imap_starttls"], fields["imap_processed_action"]) == (False, "keep")


def test_mailbox_tls_and_processed_mail_settings() -> None:
    account = SmtpAccountSpec.model_validate(
        {
            "tenantRef": {"name": "t"},
            "host": "smtp.pec.example",
            "pec": {
                "enabled": True,
                "imap": {
                    "host": "imap.pec.example",
                    "port": 143,
                    "ssl": False,
                    "starttls": True,
                    "processedAction": "move",
                    "processedFolder": "Ricevute",
                },
            },
        }
    )
    fields = account.desired_fields({})
    assert (fields["imap_ssl"], fields["imap_starttls"]) == (False, True)
    assert (fields["imap_processed_action"], fields["imap_processed_folder"]) == (
        "move",
        "Ricevute",
    )
    instance = MailProxyInstanceSpec.model_validate(
        {"bounce": {"enabled": True, "imapStarttls": True, "processedAction": "seen"}}
    )
    fields = instance.desired_fields({})
    assert (fields["bounce_imap_starttls"], fields["bounce_processed_action"]) == (True, "seen")


def test_client_auth_shapes() -> None:
    values = {("s", "token"): "t0k", ("s", "password"): "pw"}
    bearer = ClientAuthSpec.model_validate({"method": "bearer", "tokenSecretRef": {"name": "s"}})
    basic = ClientAuthSpec.model_validate(
        {"method": "basic", "user": "u", "passwordSecretRef": {"name": "s"}}
    )
    assert bearer.client_auth(values) == {"method": "bearer", "token": "t0k"}
    assert basic.client_auth(values) == {"method": "basic", "user": "u", "password": "pw"}
    assert TenantSpec(clientAuth=ClientAuthSpec()).desired_fields({})["client_auth"] is None  # type: ignore[call-arg]


def test_limits_summary_shows_unlimited_as_a_dash() -> None:
    assert LimitsSpec().summary() == "-/min -/h -/d"
    assert LimitsSpec(perHour=100, perDay=0).summary() == "-/min 100/h -/d"  # type: ignore[call-arg]
