"""Spec changes, Secret changes, drift and status figures reach Postgres and the status."""

from __future__ import annotations

import time

import pytest

from mail_proxy.db.outcomes import Outcome, record_outcomes
from tests.k8s.conftest import Cluster
from tests.k8s.kube import (
    account_spec,
    eventually,
    resource,
    secret,
    tenant_spec,
    wait_ready,
)

pytestmark = pytest.mark.k8s


async def _tenant_and_account(cluster: Cluster, **account: object) -> None:
    kube = cluster.kube
    await kube.create(secret("smtp", password="first-password"))
    await kube.create(resource("Tenant", "shop", tenant_spec()))
    await kube.create(resource("SmtpAccount", "shop-smtp", account_spec("shop", **account)))
    await wait_ready(kube, "SmtpAccount", "shop-smtp", generation=1)


async def _account_row(cluster: Cluster) -> dict[str, object] | None:
    async with cluster.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM accounts WHERE tenant_id = 'shop'")
    return None if row is None else dict(row)


async def test_spec_change_updates_the_row_and_observed_generation(cluster: Cluster) -> None:
    await _tenant_and_account(cluster)
    before = await _account_row(cluster)
    assert before is not None
    assert (before["host"], before["port"], before["limit_per_minute"]) == (
        "smtp.example",
        587,
        None,
    )

    changed = await cluster.kube.patch(
        "SmtpAccount",
        "shop-smtp",
        {"spec": {"host": "relay.example", "limits": {"perMinute": 30, "behavior": "reject"}}},
    )
    assert changed["metadata"]["generation"] == 2
    account = await wait_ready(cluster.kube, "SmtpAccount", "shop-smtp", generation=2)
    assert account["status"]["limits"] == "30/min -/h -/d"
    after = await _account_row(cluster)
    assert after is not None
    assert (after["host"], after["limit_per_minute"], after["limit_behavior"]) == (
        "relay.example",
        30,
        "reject",
    )
    assert after["pk"] == before["pk"]  # updated in place, not re-created
    assert cluster.box.decrypt(str(after["password"])) == "first-password"

    await cluster.kube.patch("Tenant", "shop", {"spec": {"displayName": "The Shop"}})
    await wait_ready(cluster.kube, "Tenant", "shop", generation=2)
    async with cluster.pool.acquire() as conn:
        assert await conn.fetchval("SELECT name FROM tenants WHERE id = 'shop'") == "The Shop"


async def test_changed_secret_stores_the_new_password(cluster_without_timer: Cluster) -> None:
    cluster = cluster_without_timer  # the Secret watch alone must carry the change
    await _tenant_and_account(cluster)
    await cluster.kube.patch("Secret", "smtp", {"stringData": {"password": "second-password"}})

    async def stored_password() -> str | None:
        row = await _account_row(cluster)
        value = cluster.box.decrypt(str(row["password"])) if row else None
        return value if value == "second-password" else None

    await eventually(stored_password, "the new SMTP password in Postgres")
    row = await _account_row(cluster)
    assert row is not None
    assert str(row["password"]).startswith("ENC:")
    secret_obj = await cluster.kube.get("Secret", "smtp")
    assert secret_obj is not None
    assert secret_obj["metadata"]["labels"]["mailproxy.genropy.org/watch"] == "referenced"


async def test_drift_behind_the_operators_back_is_repaired(cluster: Cluster) -> None:
    await _tenant_and_account(cluster)
    async with cluster.pool.acquire() as conn:
        await conn.execute("UPDATE accounts SET host = 'evil.example', password = 'plain'")

    async def repaired() -> bool:
        row = await _account_row(cluster)
        return bool(
            row
            and row["host"] == "smtp.example"
            and cluster.box.decrypt(str(row["password"])) == "first-password"
        )

    await eventually(repaired, "the account row repaired")

    async with cluster.pool.acquire() as conn:
        await conn.execute("DELETE FROM accounts")
        await conn.execute("UPDATE tenants SET api_key_hash = NULL, client_base_url = NULL")

    async def recreated() -> bool:
        async with cluster.pool.acquire() as conn:
            tenant = await conn.fetchrow("SELECT * FROM tenants WHERE id = 'shop'")
        return bool(
            await _account_row(cluster)
            and tenant["api_key_hash"]
            and tenant["client_base_url"] == "https://app.example"
        )

    await eventually(recreated, "the deleted account row and cleared columns restored")
    events = await cluster.kube.events()
    assert any(e["reason"] == "DriftRepaired" for e in events)


async def test_status_figures_follow_recorded_sends(cluster: Cluster) -> None:
    await _tenant_and_account(cluster)
    account = await wait_ready(cluster.kube, "SmtpAccount", "shop-smtp")
    assert (account["status"]["pending"], account["status"]["sentLastHour"]) == (0, 0)
    assert "lastError" not in account["status"]

    now = int(time.time())
    async with cluster.pool.acquire() as conn:
        account_pk = await conn.fetchval("SELECT pk FROM accounts WHERE tenant_id = 'shop'")
        pks = [
            await conn.fetchval(
                "INSERT INTO messages (id, tenant_id, account_id, account_pk, payload, state,"
                " lease_owner, lease_until) VALUES ($1, 'shop', 'shop-smtp', $2, '{}',"
                " $3, $4, now() + interval '5 minutes') RETURNING pk",
                f"m{i}",
                account_pk,
                "pending" if i < 2 else "sending",
                None if i < 2 else "test-sender",
            )
            for i in range(7)
        ]
        await record_outcomes(
            conn,
            owner="test-sender",
            outcomes=[
                Outcome(message_pk=pks[2], state="sent", event_ts=now, sent_at=now),
                Outcome(message_pk=pks[3], state="sent", event_ts=now - 10, sent_at=now - 10),
                Outcome(message_pk=pks[4], state="sent", event_ts=now - 7200, sent_at=now - 7200),
                Outcome(
                    message_pk=pks[5],
                    state="error",
                    event_ts=now - 5,
                    error="550 5.1.1 mailbox unavailable",
                ),
            ],
        )

    async def figures() -> dict[str, object] | None:
        obj = await cluster.kube.get("SmtpAccount", "shop-smtp")
        status = (obj or {}).get("status") or {}
        wanted = {"pending": 3, "sentLastHour": 2, "lastError": "550 5.1.1 mailbox unavailable"}
        return status if all(status.get(k) == v for k, v in wanted.items()) else None

    status = await eventually(figures, "account status figures")
    assert status["lastErrorTime"]

    async def tenant_figures() -> dict[str, object] | None:
        obj = await cluster.kube.get("Tenant", "shop")
        status = (obj or {}).get("status") or {}
        wanted = {"accounts": 1, "pending": 3, "sentLastHour": 2}
        return status if all(status.get(k) == v for k, v in wanted.items()) else None

    await eventually(tenant_figures, "tenant status figures")
