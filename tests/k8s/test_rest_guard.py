"""Rows the operator manages refuse every REST change with 409 naming the resource; no secret
ever shows up in status, events or the operator's log."""

from __future__ import annotations

import json

import pytest

from tests.integration.api.conftest import running_api
from tests.k8s.conftest import Cluster
from tests.k8s.control_plane import ROOT
from tests.k8s.kube import account_spec, eventually, resource, secret, tenant_spec, wait_ready

pytestmark = pytest.mark.k8s


async def test_every_mutating_route_refuses_managed_rows(cluster: Cluster) -> None:
    kube, ns = cluster.kube, cluster.namespace
    await kube.create(secret("smtp", password="pw"))
    await kube.create(resource("Tenant", "shop", tenant_spec()))
    await kube.create(resource("SmtpAccount", "shop-smtp", account_spec("shop")))
    await kube.create(resource("MailProxyInstance", "main", {"name": "cluster-mail"}))
    await wait_ready(kube, "SmtpAccount", "shop-smtp")
    await wait_ready(kube, "MailProxyInstance", "main")
    tenant_owner = f"Tenant/{ns}/shop"
    account_owner = f"SmtpAccount/{ns}/shop-smtp"
    instance_owner = f"MailProxyInstance/{ns}/main"

    async with running_api(cluster.dsn, key=cluster.key) as api:
        admin = api.admin()
        calls = [
            ("POST", "/tenant", {"id": "shop", "name": "x"}, tenant_owner),
            ("PUT", "/tenant/shop", {"name": "x"}, tenant_owner),
            ("DELETE", "/tenant/shop", None, tenant_owner),
            ("POST", "/tenant/shop/api-key", None, tenant_owner),
            ("DELETE", "/tenant/shop/api-key", None, tenant_owner),
            (
                "POST",
                "/account",
                {"id": "shop-smtp", "tenant_id": "shop", "host": "h", "port": 25},
                account_owner,
            ),
            ("DELETE", "/account/shop-smtp?tenant_id=shop", None, account_owner),
            ("PUT", "/instance", {"name": "x"}, instance_owner),
        ]
        for method, url, body, owner in calls:
            r = await api.client.request(method, url, json=body, headers=admin)
            assert r.status_code == 409, (method, url, r.text)
            assert owner in r.text, (method, url, r.text)
            assert "change it through Kubernetes" in r.text

        # The tenant's own key cannot change its managed row either.
        key = await kube.secret_value("shop-api-key", "api-key")
        r = await api.client.put(
            "/tenant/shop", json={"name": "x"}, headers={"X-API-Token": str(key)}
        )
        assert r.status_code == 409, r.text

    async with cluster.pool.acquire() as conn:
        assert await conn.fetchval("SELECT name FROM tenants WHERE id = 'shop'") is None
        assert await conn.fetchval("SELECT count(*) FROM accounts") == 1
        assert await conn.fetchval("SELECT name FROM instance") == "cluster-mail"


async def test_no_secret_in_status_events_or_logs(cluster: Cluster) -> None:
    kube = cluster.kube
    result = await kube.kubectl("apply", "-f", str(ROOT / "crds" / "examples"))
    assert result.returncode == 0, result.stderr
    await wait_ready(kube, "SmtpAccount", "acme-main")
    await wait_ready(kube, "MailProxyInstance", "mail-proxy")
    # A Secret nobody references is not even watched (server-side label selector).
    await kube.create(secret("bystander", password="bystander-password"))
    await kube.patch("Secret", "bystander", {"stringData": {"password": "changed"}})
    # Change a Secret too, so the watch path and a re-reconcile run.
    await kube.patch("Secret", "acme-smtp", {"stringData": {"password": "rotated-smtp-secret"}})
    await kube.patch("Secret", "acme-client-auth", {"stringData": {"token": "rotated-token"}})

    async def rotated() -> bool:
        async with cluster.pool.acquire() as conn:
            stored = await conn.fetchval("SELECT password FROM accounts")
        return cluster.box.decrypt(stored) == "rotated-smtp-secret"

    await eventually(rotated, "the rotated password stored")
    api_key = await kube.secret_value("acme-api-key", "api-key")
    assert api_key
    await cluster.operator.stop()

    secrets = [
        "change-me-client-token",
        "change-me-smtp-password",
        "change-me-sync-password",
        "change-me-bounce-password",
        "rotated-smtp-secret",
        "rotated-token",
        api_key,
    ]
    objects = [
        await kube.get(kind, name)
        for kind, name in (
            ("Tenant", "acme"),
            ("SmtpAccount", "acme-main"),
            ("MailProxyInstance", "mail-proxy"),
        )
    ]
    where = {
        "status and annotations": json.dumps(objects),
        "events": json.dumps(await kube.events()),
        "operator log": cluster.operator.log(),
    }
    assert "Reconciled" in where["events"]
    assert '"name": "acme-smtp"' in where["operator log"]  # the watched one is seen...
    assert "bystander" not in where["operator log"]  # ...the other one never reaches kopf
    for place, text in where.items():
        for value in secrets:
            assert value not in text, f"a secret value appears in the {place}"
