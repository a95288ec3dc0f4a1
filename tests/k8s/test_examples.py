"""The shipped examples, applied with kubectl, become rows; the tenant's key works at once."""

from __future__ import annotations

import httpx
import pytest

from mail_proxy.redact import open_client_auth
from tests.integration.api.conftest import running_api
from tests.k8s.conftest import Cluster
from tests.k8s.control_plane import ROOT
from tests.k8s.kube import eventually, ready

pytestmark = pytest.mark.k8s


async def test_examples_become_rows_with_encrypted_secrets(cluster: Cluster) -> None:
    result = await cluster.kube.kubectl("apply", "-f", str(ROOT / "crds" / "examples"))
    assert result.returncode == 0, result.stdout + result.stderr

    async def all_ready() -> list[dict] | None:
        objs = [
            await cluster.kube.get(kind, name)
            for kind, name in (
                ("Tenant", "acme"),
                ("SmtpAccount", "acme-main"),
                ("MailProxyInstance", "mail-proxy"),
            )
        ]
        if all((ready(o) or {}).get("status") == "True" for o in objs):
            return objs
        return None

    tenant, account, _ = await eventually(all_ready, "examples Ready")
    assert tenant["status"]["observedGeneration"] == 1
    assert tenant["status"]["tenantId"] == "acme"
    assert account["status"]["limits"] == "60/min 1000/h 10000/d"

    box = cluster.box
    async with cluster.pool.acquire() as conn:
        trow = await conn.fetchrow("SELECT * FROM tenants WHERE id = 'acme'")
        arow = await conn.fetchrow(
            "SELECT * FROM accounts WHERE tenant_id = 'acme' AND id = 'main'"
        )
        irow = await conn.fetchrow("SELECT * FROM instance")
    assert trow["managed_by"] == f"Tenant/{cluster.namespace}/acme"
    assert trow["client_auth"]["token"].startswith("ENC:")
    assert open_client_auth(box, trow["client_auth"]) == {
        "method": "bearer",
        "token": "change-me-client-token",
    }
    assert arow["password"].startswith("ENC:")
    assert box.decrypt(arow["password"]) == "change-me-smtp-password"
    assert (arow["host"], arow["port"], arow["use_tls"], arow["limit_per_hour"]) == (
        "smtp.acme.example",
        587,
        True,
        1000,
    )
    assert irow["managed_by"] == f"MailProxyInstance/{cluster.namespace}/mail-proxy"
    assert box.decrypt(irow["bounce_imap_password"]) == "change-me-bounce-password"
    assert irow["config"]["max_retries"] == 5
    assert irow["config"]["client_sync_auth"]["password"].startswith("ENC:")

    async with httpx.AsyncClient() as client:
        health = await client.get(cluster.operator.health_url)
    assert health.status_code == 200  # liveness: the event loop answers (issue 16 item 4)
    # database health lives in metrics and status, not in liveness
    assert await cluster.operator.metric("mail_proxy_operator_database_up") == 1.0

    api_key = await cluster.kube.secret_value("acme-api-key", "api-key")
    assert api_key
    async with running_api(cluster.dsn, key=cluster.key) as api:
        r = await api.client.get("/tenant/acme", headers={"X-API-Token": api_key})
        assert r.status_code == 200, r.text
        assert r.json()["managed_by"] == f"Tenant/{cluster.namespace}/acme"
        r = await api.client.get("/tenant/acme", headers={"X-API-Token": "not-the-key"})
        assert r.status_code == 401
