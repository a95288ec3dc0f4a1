"""Availability in a shared cluster: a Postgres outage, two replicas with one leader, and two
installs side by side on one API server (issue 16, items 3, 4 and 5)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mail_proxy.db.pool import create_pool
from mail_proxy.encryption import generate_key
from tests.conftest import migrated_database
from tests.k8s.conftest import Cluster, OperatorProcess, _cluster, operator_process
from tests.k8s.kube import (
    Kube,
    eventually,
    ready,
    resource,
    tenant_spec,
    wait_not_ready,
    wait_ready,
)
from tests.pg_proxy import SocketProxy

pytestmark = pytest.mark.k8s


async def _events(kube: Kube, name: str, reason: str, kind: str = "Warning") -> int:
    return sum(
        1
        for e in await kube.events()
        if e["type"] == kind and e["reason"] == reason and e["involvedObject"]["name"] == name
    )


async def _healthy(operator: OperatorProcess) -> bool:
    async with httpx.AsyncClient(timeout=2) as client:
        return (await client.get(operator.health_url)).status_code == 200


async def test_a_postgres_outage_is_a_status_not_a_crash(
    kube: Kube, dsn: str, tmp_path: Path, proxy: SocketProxy
) -> None:
    # Started while Postgres is down: live at once, one clear line, no traceback.
    async with _cluster(kube, dsn, tmp_path, 1, GMP_DATABASE_URL=proxy.dsn(dsn)) as cluster:
        await asyncio.sleep(2)
        assert await _healthy(cluster.operator)
        log = cluster.operator.log()
        assert log.count("is not answering") == 1, log[-3000:]
        assert "Traceback" not in log
        await proxy.start()
        await kube.create(resource("Tenant", "shop", tenant_spec()))
        await wait_ready(kube, "Tenant", "shop")

        await proxy.cut()
        condition = await wait_not_ready(kube, "Tenant", "shop", "DatabaseUnavailable")
        assert "database error" in condition["message"]
        await asyncio.sleep(3)  # several repair ticks during the outage
        assert await _healthy(cluster.operator)
        assert cluster.operator.proc is not None
        assert cluster.operator.proc.poll() is None
        assert await _events(kube, "shop", "DatabaseUnavailable") == 1
        assert await cluster.operator.metric("mail_proxy_operator_database_up") == 0

        await proxy.start()
        await wait_ready(kube, "Tenant", "shop")
        assert await _events(kube, "shop", "DatabaseUnavailable") == 1
        await eventually(
            lambda: _metric_is(cluster, "mail_proxy_operator_database_up", 1), "database_up 1"
        )
        assert "Traceback" not in cluster.operator.log()


async def _metric_is(cluster: Cluster, name: str, value: float) -> bool:
    return await cluster.operator.metric(name) == value


async def test_two_replicas_one_leader_and_a_takeover(kube: Kube, dsn: str, tmp_path: Path) -> None:
    key = generate_key()
    first = operator_process(kube, dsn, tmp_path / "first.log", key_text=key)
    second = operator_process(kube, dsn, tmp_path / "second.log", key_text=key)
    try:
        await first.start()
        await eventually(lambda: _leads(first, 1), "the first replica leads")
        await second.start()
        await kube.create(resource("Tenant", "one", tenant_spec()))
        await wait_ready(kube, "Tenant", "one")
        assert await second.metric("mail_proxy_operator_leader") == 0
        assert "reconciled" not in second.log()  # only the leader writes

        await first.stop()
        await eventually(lambda: _leads(second, 1), "the standby takes over", timeout=30)
        await kube.create(resource("Tenant", "two", tenant_spec()))
        await wait_ready(kube, "Tenant", "two")
        assert "reconciled" in second.log()
    finally:
        await first.stop()
        await second.stop()


async def _leads(operator: OperatorProcess, value: float) -> bool:
    return await operator.metric("mail_proxy_operator_leader") == value


@pytest.fixture
async def second_dsn(pg_server: str) -> AsyncIterator[str]:
    async with migrated_database(pg_server, "mp_second") as url:
        yield url


async def test_two_installs_share_one_api_server(
    kube: Kube, dsn: str, second_dsn: str, tmp_path: Path
) -> None:
    blue = operator_process(
        kube, dsn, tmp_path / "blue.log", key_text=generate_key(), GMP_OPERATOR_INSTANCE="blue"
    )
    green = operator_process(
        kube,
        second_dsn,
        tmp_path / "green.log",
        key_text=generate_key(),
        GMP_OPERATOR_INSTANCE="green",
    )
    pools = [await create_pool(dsn, max_size=2), await create_pool(second_dsn, max_size=2)]
    try:
        await blue.start()
        await green.start()
        for name, instance in (("b", "blue"), ("g", "green"), ("plain", None)):
            body = resource("Tenant", name, tenant_spec())
            if instance:
                body["metadata"]["labels"] = {"mailproxy.genropy.org/instance": instance}
            await kube.create(body)
        await wait_ready(kube, "Tenant", "b")
        await wait_ready(kube, "Tenant", "g")
        await asyncio.sleep(2)
        assert ready(await kube.get("Tenant", "plain")) is None  # no install of its own here
        rows = []
        for pool in pools:
            async with pool.acquire() as conn:
                rows.append([r["id"] for r in await conn.fetch("SELECT id FROM tenants")])
        assert rows == [["b"], ["g"]]
        assert await blue.metric("mail_proxy_operator_leader") == 1
        assert await green.metric("mail_proxy_operator_leader") == 1
    finally:
        await blue.stop()
        await green.stop()
        for pool in pools:
            await pool.close()


def _nudge(tenant: dict[str, object] | None) -> str | None:
    """The reconcile request an operator last wrote on a resource (a Secret change nudges it)."""
    assert tenant is not None
    annotations = tenant["metadata"].get("annotations") or {}  # type: ignore[attr-defined]
    value: str | None = annotations.get("mailproxy.genropy.org/reconcile-request")
    return value


async def test_an_install_ignores_the_api_key_secrets_of_another(
    kube: Kube, dsn: str, second_dsn: str, tmp_path: Path
) -> None:
    """API-key Secrets carry their install's label: another install in the same namespace never
    reacts to their changes, and never takes over a retained one (issue 16, item 3)."""
    blue = operator_process(
        kube, dsn, tmp_path / "blue.log", key_text=generate_key(), GMP_OPERATOR_INSTANCE="blue"
    )
    green = operator_process(
        kube,
        second_dsn,
        tmp_path / "green.log",
        key_text=generate_key(),
        GMP_OPERATOR_INSTANCE="green",
    )
    try:
        await blue.start()
        await green.start()
        for name, instance, policy in (("kept", "blue", "Retain"), ("b", "blue", "Delete")):
            body = resource("Tenant", name, tenant_spec(deletionPolicy=policy))
            body["metadata"]["labels"] = {"mailproxy.genropy.org/instance": instance}
            await kube.create(body)
        body = resource("Tenant", "g", tenant_spec())
        body["metadata"]["labels"] = {"mailproxy.genropy.org/instance": "green"}
        await kube.create(body)
        for name in ("kept", "b", "g"):
            await wait_ready(kube, "Tenant", name)
        key_secret = await kube.get("Secret", "b-api-key")
        assert key_secret is not None
        assert key_secret["metadata"]["labels"]["mailproxy.genropy.org/instance"] == "blue"
        green_secret = await kube.get("Secret", "g-api-key")
        assert green_secret is not None
        assert green_secret["metadata"]["labels"]["mailproxy.genropy.org/instance"] == "green"

        # Blue's retained tenant leaves its key Secret behind (no owner any more).
        kept_key = await kube.secret_value("kept-api-key", "api-key")
        await kube.delete("Tenant", "kept")

        async def kept_gone() -> bool:
            return await kube.get("Tenant", "kept") is None

        await eventually(kept_gone, "Tenant kept deleted (Retain)")
        await blue.stop()

        # A change to blue's key Secret reaches nobody: green does not nudge blue's Tenant...
        before = _nudge(await kube.get("Tenant", "b"))
        await kube.patch("Secret", "b-api-key", {"metadata": {"annotations": {"touched": "1"}}})
        # ...while a change to green's own key Secret does nudge green's Tenant (control).
        green_before = _nudge(await kube.get("Tenant", "g"))
        await kube.patch("Secret", "g-api-key", {"metadata": {"annotations": {"touched": "1"}}})

        async def green_nudged() -> bool:
            return _nudge(await kube.get("Tenant", "g")) != green_before

        await eventually(green_nudged, "green re-reconciles its Tenant after its Secret changed")
        await asyncio.sleep(2)
        assert _nudge(await kube.get("Tenant", "b")) == before

        # Green naming the retained tenant does not take blue's key Secret.
        body = resource("Tenant", "kept", tenant_spec())
        body["metadata"]["labels"] = {"mailproxy.genropy.org/instance": "green"}
        await kube.create(body)
        condition = await wait_not_ready(kube, "Tenant", "kept", "Conflict")
        assert "Secret 'kept-api-key' exists and does not belong" in condition["message"]
        left = await kube.get("Secret", "kept-api-key")
        assert left is not None
        assert left["metadata"]["labels"]["mailproxy.genropy.org/instance"] == "blue"
        assert await kube.secret_value("kept-api-key", "api-key") == kept_key
    finally:
        await blue.stop()
        await green.stop()
