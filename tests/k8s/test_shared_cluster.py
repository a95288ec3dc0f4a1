"""A shared cluster: adoption across namespaces, key rotation while running, deletion order,
pausing, API-key grace, and the Ready=Unknown start (issue 16)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mail_proxy.db.instance import token_owner
from mail_proxy.encryption import SecretBox, decode_key, generate_key, key_id, stored_key_id
from mail_proxy.tokens import hash_token
from tests.integration.core.cli import cli_env, run_cli
from tests.k8s.conftest import Cluster, _cluster
from tests.k8s.kube import (
    Kube,
    account_spec,
    eventually,
    ready,
    resource,
    secret,
    tenant_spec,
    wait_not_ready,
    wait_ready,
)

pytestmark = pytest.mark.k8s


async def _namespace(kube: Kube) -> Kube:
    name = f"t-{uuid.uuid4().hex[:10]}"
    r = await kube.client.post(
        "/api/v1/namespaces",
        json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    assert r.status_code == 201, r.text
    return Kube(kube.plane, kube.client, name)


@pytest.fixture
async def two_namespaces(
    kube: Kube, dsn: str, tmp_path: Path
) -> AsyncIterator[tuple[Cluster, Kube]]:
    """One operator serving the test's namespace (A) and a second one (B)."""
    other = await _namespace(kube)
    async with _cluster(
        kube, dsn, tmp_path, 1, GMP_OPERATOR_NAMESPACES=f"{kube.namespace},{other.namespace}"
    ) as running:
        yield running, other


async def _warnings(kube: Kube, name: str, reason: str) -> int:
    return sum(
        1
        for e in await kube.events()
        if e["type"] == "Warning" and e["reason"] == reason and e["involvedObject"]["name"] == name
    )


async def test_a_tenant_in_another_namespace_cannot_adopt_a_retained_tenant(
    two_namespaces: tuple[Cluster, Kube],
) -> None:
    cluster, other = two_namespaces
    a = cluster.kube
    await a.create(resource("Tenant", "acme", tenant_spec(deletionPolicy="Retain")))
    await wait_ready(a, "Tenant", "acme")
    owner_key = await a.secret_value("acme-api-key", "api-key")
    assert owner_key
    await a.delete("Tenant", "acme")
    await eventually(lambda: _absent(a, "Tenant", "acme"), "Tenant acme deleted (Retain)")

    # Namespace B names the same tenant id: refused, and the owner's key keeps working.
    await other.create(resource("Tenant", "acme", tenant_spec()))
    condition = await wait_not_ready(other, "Tenant", "acme", "Conflict")
    assert f"released by Tenant/{a.namespace}/acme" in condition["message"]
    assert "mailproxy.genropy.org/adopt" in condition["message"]
    assert await other.secret_value("acme-api-key", "api-key") is None
    async with cluster.pool.acquire() as conn:
        owner = await token_owner(conn, token_hash=hash_token(owner_key), now_ts=int(time.time()))
        managed_by = await conn.fetchval("SELECT managed_by FROM tenants WHERE id = 'acme'")
    assert owner == ("tenant", "acme")
    assert managed_by is None
    assert await _warnings(other, "acme", "Conflict") == 1  # once, not per retry

    # The namespace/name that released it takes it back, with the same key.
    await other.delete("Tenant", "acme")
    await a.create(resource("Tenant", "acme", tenant_spec()))
    await wait_ready(a, "Tenant", "acme")
    assert await a.secret_value("acme-api-key", "api-key") == owner_key


async def test_a_rest_created_tenant_is_adopted_only_when_asked(cluster: Cluster) -> None:
    kube = cluster.kube
    async with cluster.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO tenants (id, api_key_hash) VALUES ('legacy', $1)", hash_token("old-key")
        )
    await kube.create(resource("Tenant", "legacy", tenant_spec()))
    condition = await wait_not_ready(kube, "Tenant", "legacy", "Conflict")
    assert "created through the REST API" in condition["message"]
    await kube.patch(
        "Tenant", "legacy", {"metadata": {"annotations": {"mailproxy.genropy.org/adopt": "legacy"}}}
    )
    await wait_ready(kube, "Tenant", "legacy")
    async with cluster.pool.acquire() as conn:
        assert await conn.fetchval("SELECT managed_by FROM tenants WHERE id = 'legacy'") == (
            f"Tenant/{kube.namespace}/legacy"
        )


async def _absent(kube: Kube, kind: str, name: str) -> bool:
    return await kube.get(kind, name) is None


async def _stored_key_ids(cluster: Cluster) -> set[str | None]:
    async with cluster.pool.acquire() as conn:
        rows = await conn.fetch("SELECT password FROM accounts WHERE password IS NOT NULL")
        auth = await conn.fetch("SELECT client_auth FROM tenants WHERE client_auth IS NOT NULL")
    values = [r["password"] for r in rows] + [r["client_auth"]["token"] for r in auth]
    return {stored_key_id(v) for v in values}


@pytest.fixture
async def keyed_cluster(kube: Kube, dsn: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    """An operator following the encryption-key Secret `mail-proxy-key` (key K)."""
    key = generate_key()
    await kube.create(secret("mail-proxy-key", MAIL_PROXY_ENCRYPTION_KEY=key))
    async with _cluster(
        kube,
        dsn,
        tmp_path,
        1,
        MAIL_PROXY_ENCRYPTION_KEY=key,
        GMP_OPERATOR_ENCRYPTION_KEY_SECRET=f"{kube.namespace}/mail-proxy-key",
    ) as running:
        yield running


async def test_rotation_while_the_operator_runs(keyed_cluster: Cluster) -> None:
    cluster, kube = keyed_cluster, keyed_cluster.kube
    old_text = cluster.operator.env["MAIL_PROXY_ENCRYPTION_KEY"]
    await kube.create(secret("smtp", password="smtp-pw"))
    await kube.create(secret("sync", token="sync-token"))
    await kube.create(
        resource(
            "Tenant",
            "shop",
            tenant_spec(clientAuth={"method": "bearer", "tokenSecretRef": {"name": "sync"}}),
        )
    )
    await kube.create(resource("SmtpAccount", "relay", account_spec("shop")))
    await wait_ready(kube, "SmtpAccount", "relay")
    await wait_ready(kube, "Tenant", "shop")
    assert await _stored_key_ids(cluster) == {key_id(decode_key(old_text))}

    # 1. `mail-proxy rotate-key` behind the operator's back: it must not undo it.
    new_text = generate_key()
    env = cli_env(GMP_DATABASE_URL=cluster.dsn, MAIL_PROXY_ENCRYPTION_KEY=old_text)
    code, _, err = await run_cli("rotate-key", "--new-key", new_text, env=env)
    assert code == 0, err
    new_id = key_id(decode_key(new_text))
    condition = await wait_not_ready(kube, "SmtpAccount", "relay", "EncryptionKeyUnknown")
    assert new_id in condition["message"]
    assert await _stored_key_ids(cluster) == {new_id}  # several ticks later: still the new key

    # 2. The Secret catches up (new primary, old kept as previous): Ready again, nothing moved.
    await kube.patch(
        "Secret",
        "mail-proxy-key",
        {
            "stringData": {
                "MAIL_PROXY_ENCRYPTION_KEY": new_text,
                "MAIL_PROXY_PREVIOUS_ENCRYPTION_KEYS": old_text,
            }
        },
    )
    await wait_ready(kube, "SmtpAccount", "relay", timeout=30)
    assert await _stored_key_ids(cluster) == {new_id}

    # 3. Rotation driven from the Secret alone: the operator re-encrypts in the background.
    third_text = generate_key()
    await kube.patch(
        "Secret",
        "mail-proxy-key",
        {
            "stringData": {
                "MAIL_PROXY_ENCRYPTION_KEY": third_text,
                "MAIL_PROXY_PREVIOUS_ENCRYPTION_KEYS": new_text,
            }
        },
    )
    third_id = key_id(decode_key(third_text))

    async def rotated() -> bool:
        return await _stored_key_ids(cluster) == {third_id}

    await eventually(rotated, "every stored secret under the Secret's new key", timeout=30)
    assert await cluster.operator.metric("mail_proxy_operator_secrets_under_old_keys") == 0
    only_third = SecretBox(decode_key(third_text))
    async with cluster.pool.acquire() as conn:
        password = await conn.fetchval("SELECT password FROM accounts")
    assert only_third.decrypt(password) == "smtp-pw"
    assert (ready(await kube.get("SmtpAccount", "relay")) or {}).get("status") == "True"


async def test_deleting_a_tenant_honours_each_accounts_policy(cluster: Cluster) -> None:
    kube = cluster.kube
    await kube.create(secret("smtp", password="pw"))
    await kube.create(resource("Tenant", "shop", tenant_spec()))
    await kube.create(
        resource("SmtpAccount", "kept", account_spec("shop", deletionPolicy="Retain"))
    )
    await wait_ready(kube, "SmtpAccount", "kept")

    await kube.delete("Tenant", "shop")
    await eventually(
        lambda: _warnings(kube, "shop", "DependentsExist"), "the Tenant waits for its accounts"
    )
    assert await kube.get("Tenant", "shop") is not None
    await kube.delete("SmtpAccount", "kept")
    await eventually(lambda: _absent(kube, "Tenant", "shop"), "Tenant deleted after its account")
    async with cluster.pool.acquire() as conn:
        account = await conn.fetchrow("SELECT managed_by, released_by FROM accounts")
        tenant = await conn.fetchrow("SELECT managed_by FROM tenants WHERE id = 'shop'")
    assert account is not None  # Retain held: the FK cascade did not take it
    assert account["managed_by"] is None
    assert tenant is not None
    assert tenant["managed_by"] is None


async def test_new_resources_start_unknown_pause_and_key_grace(cluster: Cluster) -> None:
    kube = cluster.kube
    await kube.create(resource("Tenant", "shop", tenant_spec()))
    await wait_ready(kube, "Tenant", "shop")
    first_key = await kube.secret_value("shop-api-key", "api-key")
    assert first_key

    # Rotation on request: the previous key stays valid for the grace period.
    await kube.patch(
        "Tenant",
        "shop",
        {"metadata": {"annotations": {"mailproxy.genropy.org/rotate-api-key": "1"}}},
    )

    async def rotated() -> str | None:
        value = await kube.secret_value("shop-api-key", "api-key")
        return value if value != first_key else None

    second_key = await eventually(rotated, "a new API key")
    await eventually(lambda: _owner_is(cluster, second_key, "shop"), "the new key's hash stored")
    now = int(time.time())
    async with cluster.pool.acquire() as conn:
        assert await token_owner(conn, token_hash=hash_token(first_key), now_ts=now) == (
            "tenant",
            "shop",
        )
        later = now + 3601
        assert await token_owner(conn, token_hash=hash_token(first_key), now_ts=later) is None

    # Paused: rows are left alone (drift stays), the status says so; unpaused: repaired.
    await kube.patch(
        "Tenant", "shop", {"metadata": {"annotations": {"mailproxy.genropy.org/managed": "false"}}}
    )

    async def paused() -> bool:
        obj = await kube.get("Tenant", "shop")
        conditions = ((obj or {}).get("status") or {}).get("conditions") or []
        return any(c["type"] == "ReconciliationPaused" for c in conditions)

    await eventually(paused, "ReconciliationPaused")
    async with cluster.pool.acquire() as conn:
        await conn.execute("UPDATE tenants SET client_base_url = 'https://evil.example'")
    await asyncio.sleep(2.5)  # a few repair ticks (the timer runs every second)
    async with cluster.pool.acquire() as conn:
        assert await conn.fetchval("SELECT client_base_url FROM tenants") == "https://evil.example"
    await kube.patch(
        "Tenant", "shop", {"metadata": {"annotations": {"mailproxy.genropy.org/managed": None}}}
    )

    async def repaired() -> bool:
        async with cluster.pool.acquire() as conn:
            url = await conn.fetchval("SELECT client_base_url FROM tenants")
        return bool(url == "https://app.example")

    await eventually(repaired, "drift repaired once unpaused")
    assert not await paused()


async def _owner_is(cluster: Cluster, key: str, tenant: str) -> bool:
    async with cluster.pool.acquire() as conn:
        owner = await token_owner(conn, token_hash=hash_token(key), now_ts=int(time.time()))
    return owner == ("tenant", tenant)


async def test_an_unhealthy_account_shows_in_its_status(cluster: Cluster) -> None:
    kube = cluster.kube
    await kube.create(secret("smtp", password="pw"))
    await kube.create(resource("Tenant", "shop", tenant_spec()))
    await kube.create(resource("SmtpAccount", "relay", account_spec("shop")))
    await wait_ready(kube, "SmtpAccount", "relay")
    async with cluster.pool.acquire() as conn:
        await conn.execute(
            "UPDATE accounts SET health = 'unhealthy', "
            "health_reason = 'certificate not trusted: self-signed'"
        )
    condition = await wait_not_ready(kube, "SmtpAccount", "relay", "AccountUnhealthy")
    assert "certificate not trusted: self-signed" in condition["message"]
    async with cluster.pool.acquire() as conn:
        await conn.execute("UPDATE accounts SET health = 'ok', health_reason = NULL")
    await wait_ready(kube, "SmtpAccount", "relay", timeout=90)


async def test_the_instance_is_taken_only_from_the_operators_own_namespace(
    two_namespaces: tuple[Cluster, Kube],
) -> None:
    """No instance namespace configured and no POD_NAMESPACE: the first watched namespace is
    the operator's own; a MailProxyInstance in another watched namespace never claims the
    install's settings row (issue 16, item 3)."""
    cluster, other = two_namespaces
    a = cluster.kube
    await other.create(resource("MailProxyInstance", "intruder", {"delivery": {"maxRetries": 1}}))
    condition = await wait_not_ready(other, "MailProxyInstance", "intruder", "WrongNamespace")
    assert f"namespace '{a.namespace}' only" in condition["message"]
    async with cluster.pool.acquire() as conn:
        assert await conn.fetchval("SELECT managed_by FROM instance") is None
    await a.create(resource("MailProxyInstance", "main", {"delivery": {"maxRetries": 2}}))
    await wait_ready(a, "MailProxyInstance", "main")
    async with cluster.pool.acquire() as conn:
        assert await conn.fetchval("SELECT managed_by FROM instance") == (
            f"MailProxyInstance/{a.namespace}/main"
        )
