"""Deletion policies, API-key rotation, failures that heal, conflicts, and a SIGKILLed operator."""

from __future__ import annotations

import pytest

from mail_proxy.tokens import hash_token
from tests.k8s.conftest import Cluster
from tests.k8s.kube import (
    account_spec,
    eventually,
    resource,
    secret,
    tenant_spec,
    wait_not_ready,
    wait_ready,
)

pytestmark = pytest.mark.k8s


async def _rows(cluster: Cluster) -> dict[str, list[tuple[str, ...]]]:
    async with cluster.pool.acquire() as conn:
        tenants = await conn.fetch("SELECT id, managed_by FROM tenants ORDER BY id")
        accounts = await conn.fetch(
            "SELECT tenant_id, id, managed_by FROM accounts ORDER BY tenant_id, id"
        )
    return {
        "tenants": [tuple(r.values()) for r in tenants],
        "accounts": [tuple(r.values()) for r in accounts],
    }


async def _gone(cluster: Cluster, kind: str, name: str) -> bool:
    return await cluster.kube.get(kind, name) is None


async def test_delete_policy_removes_rows_and_retain_keeps_them(cluster: Cluster) -> None:
    kube, ns = cluster.kube, cluster.namespace
    await kube.create(secret("smtp", password="pw"))
    await kube.create(resource("Tenant", "gone", tenant_spec()))
    await kube.create(resource("Tenant", "kept", tenant_spec(deletionPolicy="Retain")))
    await kube.create(resource("SmtpAccount", "gone-smtp", account_spec("gone")))
    await kube.create(
        resource("SmtpAccount", "kept-smtp", account_spec("kept", deletionPolicy="Retain"))
    )
    for kind, name in (("SmtpAccount", "gone-smtp"), ("SmtpAccount", "kept-smtp")):
        await wait_ready(kube, kind, name)
    kept_key = await kube.secret_value("kept-api-key", "api-key")
    assert kept_key

    await kube.delete("SmtpAccount", "gone-smtp")
    await kube.delete("SmtpAccount", "kept-smtp")
    await eventually(lambda: _gone(cluster, "SmtpAccount", "gone-smtp"), "gone-smtp deleted")
    await eventually(lambda: _gone(cluster, "SmtpAccount", "kept-smtp"), "kept-smtp deleted")
    assert (await _rows(cluster))["accounts"] == [("kept", "kept-smtp", None)]

    await kube.delete("Tenant", "gone")
    await kube.delete("Tenant", "kept")
    await eventually(lambda: _gone(cluster, "Tenant", "gone"), "Tenant gone deleted")
    await eventually(lambda: _gone(cluster, "Tenant", "kept"), "Tenant kept deleted")
    # Retain: the row stays, released to the REST API, and its key keeps working.
    assert (await _rows(cluster))["tenants"] == [("kept", None)]
    assert await kube.get("Secret", "gone-api-key") is None
    kept_secret = await kube.get("Secret", "kept-api-key")
    assert kept_secret is not None
    assert not kept_secret["metadata"].get("ownerReferences")
    async with cluster.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT api_key_hash FROM tenants WHERE id = 'kept'")
    assert stored == hash_token(kept_key)
    assert ns  # the namespace itself stays (no controller-manager here)


async def test_instance_delete_resets_settings_and_retain_keeps_them(cluster: Cluster) -> None:
    kube = cluster.kube
    await kube.create(secret("imap", password="imap-pw"))
    bounce = {
        "enabled": True,
        "imapHost": "imap.example",
        "imapUser": "bounces",
        "imapPasswordSecretRef": {"name": "imap"},
    }
    await kube.create(
        resource("MailProxyInstance", "main", {"bounce": bounce, "delivery": {"maxRetries": 2}})
    )
    await wait_ready(kube, "MailProxyInstance", "main")

    async def instance() -> dict[str, object]:
        async with cluster.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM instance")
        return dict(row)

    row = await instance()
    assert (row["bounce_enabled"], row["config"]) == (True, {"max_retries": 2})
    assert cluster.box.decrypt(str(row["bounce_imap_password"])) == "imap-pw"

    await kube.delete("MailProxyInstance", "main")
    await eventually(lambda: _gone(cluster, "MailProxyInstance", "main"), "instance deleted")
    row = await instance()
    assert (row["bounce_enabled"], row["bounce_imap_host"], row["config"]) == (False, None, {})
    assert (row["bounce_imap_password"], row["managed_by"]) == (None, None)

    await kube.create(
        resource("MailProxyInstance", "kept", {"name": "kept", "deletionPolicy": "Retain"})
    )
    await wait_ready(kube, "MailProxyInstance", "kept")
    await kube.delete("MailProxyInstance", "kept")
    await eventually(lambda: _gone(cluster, "MailProxyInstance", "kept"), "instance deleted")
    row = await instance()
    assert (row["name"], row["managed_by"]) == ("kept", None)


async def test_api_key_rotates_when_its_secret_is_deleted_or_on_request(
    cluster_without_timer: Cluster,
) -> None:
    cluster = cluster_without_timer  # the Secret watch alone must notice the deletion
    kube = cluster.kube
    await kube.create(resource("Tenant", "shop", tenant_spec()))
    await wait_ready(kube, "Tenant", "shop")
    first = await kube.secret_value("shop-api-key", "api-key")
    assert first

    async def stored_hash() -> str | None:
        async with cluster.pool.acquire() as conn:
            value: str | None = await conn.fetchval(
                "SELECT api_key_hash FROM tenants WHERE id = 'shop'"
            )
            return value

    assert await stored_hash() == hash_token(first)

    await kube.delete("Secret", "shop-api-key")

    async def new_key() -> str | None:
        key = await kube.secret_value("shop-api-key", "api-key")
        return key if key and key != first and await stored_hash() == hash_token(key) else None

    second = await eventually(new_key, "a new key after the Secret was deleted")
    secret_obj = await kube.get("Secret", "shop-api-key")
    assert secret_obj is not None
    assert secret_obj["metadata"]["ownerReferences"][0]["kind"] == "Tenant"

    await kube.patch(
        "Tenant",
        "shop",
        {"metadata": {"annotations": {"mailproxy.genropy.org/rotate-api-key": "1"}}},
    )

    async def third_key() -> str | None:
        key = await kube.secret_value("shop-api-key", "api-key")
        return (
            key
            if key not in (first, second) and await stored_hash() == hash_token(key or "")
            else None
        )

    third = await eventually(third_key, "a new key after the rotate annotation")
    # The same annotation value again does not rotate again.
    await kube.patch("Tenant", "shop", {"spec": {"displayName": "Shop"}})
    await wait_ready(kube, "Tenant", "shop", generation=2)
    assert await kube.secret_value("shop-api-key", "api-key") == third


async def test_failures_set_ready_false_post_an_event_and_heal(cluster: Cluster) -> None:
    kube = cluster.kube
    await kube.create(resource("SmtpAccount", "early", account_spec("late")))
    condition = await wait_not_ready(kube, "SmtpAccount", "early", "TenantNotReady")
    assert "Tenant 'late' has no row yet" in condition["message"]

    await kube.create(resource("Tenant", "late", tenant_spec()))
    condition = await wait_not_ready(kube, "SmtpAccount", "early", "SecretNotFound")
    assert condition["message"] == f"Secret 'smtp' not found in namespace '{cluster.namespace}'"

    async def warning_event() -> dict[str, object] | None:
        for event in await kube.events():
            if (
                event["type"] == "Warning"
                and event["reason"] == "SecretNotFound"
                and event["involvedObject"]["name"] == "early"
            ):
                return event
        return None

    await eventually(warning_event, "a Warning event about the missing Secret")

    await kube.create(secret("smtp", wrong="pw"))
    condition = await wait_not_ready(kube, "SmtpAccount", "early", "SecretNotFound")
    await eventually(
        lambda: _message_is(cluster, "early", "Secret 'smtp' has no text key 'password'"),
        "the missing-key message",
    )
    await kube.patch("Secret", "smtp", {"stringData": {"password": "pw"}})
    account = await wait_ready(kube, "SmtpAccount", "early")
    assert account["status"]["tenantId"] == "late"


async def _message_is(cluster: Cluster, name: str, message: str) -> bool:
    obj = await cluster.kube.get("SmtpAccount", name)
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return bool(condition["message"] == message)
    return False


async def test_a_row_managed_by_another_resource_is_not_taken(cluster: Cluster) -> None:
    kube = cluster.kube
    await kube.create(resource("Tenant", "first", tenant_spec(tenantId="shared")))
    await wait_ready(kube, "Tenant", "first")
    await kube.create(resource("Tenant", "second", tenant_spec(tenantId="shared")))
    condition = await wait_not_ready(kube, "Tenant", "second", "Conflict")
    assert condition["message"] == (
        f"tenant 'shared' is already managed by Tenant/{cluster.namespace}/first"
    )
    assert (await _rows(cluster))["tenants"] == [("shared", f"Tenant/{cluster.namespace}/first")]


async def test_sigkill_and_restart_loses_and_duplicates_nothing(cluster: Cluster) -> None:
    kube = cluster.kube
    await kube.create(secret("smtp", password="pw"))
    names = [f"t{i}" for i in range(6)]
    for name in names:
        await kube.create(resource("Tenant", name, tenant_spec()))
        await kube.create(resource("SmtpAccount", f"{name}-smtp", account_spec(name)))
    await wait_ready(kube, "Tenant", names[0])
    cluster.operator.kill()  # mid-flight: some resources are done, others not yet

    # While it is down: a spec change, a deletion, and a new resource.
    await kube.patch("SmtpAccount", "t1-smtp", {"spec": {"port": 2525}})
    await kube.delete("SmtpAccount", "t2-smtp")
    await kube.create(resource("Tenant", "t9", tenant_spec()))
    await cluster.operator.start()

    for name in [*names, "t9"]:
        await wait_ready(kube, "Tenant", name)
    for name in names:
        if name != "t2":
            await wait_ready(
                kube, "SmtpAccount", f"{name}-smtp", generation=2 if name == "t1" else 1
            )
    await eventually(lambda: _gone(cluster, "SmtpAccount", "t2-smtp"), "t2-smtp deleted")

    rows = await _rows(cluster)
    assert [t[0] for t in rows["tenants"]] == [*names, "t9"]
    assert [a[0] for a in rows["accounts"]] == [n for n in names if n != "t2"]
    async with cluster.pool.acquire() as conn:
        port = await conn.fetchval("SELECT port FROM accounts WHERE tenant_id = 't1'")
        hashes = await conn.fetch("SELECT id, api_key_hash FROM tenants ORDER BY id")
    assert port == 2525
    for row in hashes:  # every key in its Secret matches the stored hash: none lost, none doubled
        key = await kube.secret_value(f"{row['id']}-api-key", "api-key")
        assert key, row["id"]
        assert hash_token(key) == row["api_key_hash"], row["id"]
    await cluster.operator.stop()
    assert "Traceback" not in cluster.operator.log()
