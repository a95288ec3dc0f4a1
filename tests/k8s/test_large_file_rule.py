"""A Tenant's large files follow the REST API's rule (issue 12): links through the download
route need `largeFile.publicBaseUrl` unless the install has GMP_DOWNLOAD_BASE_URL. The CRD
cannot say it (it depends on the install), so the API server accepts the Tenant and the
operator answers Ready=False, reason InvalidSpec; `fileTtlDays` has the API's bound (3650)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.k8s.conftest import Cluster, _cluster
from tests.k8s.kube import Kube, resource, tenant_spec, wait_not_ready, wait_ready

pytestmark = pytest.mark.k8s

FILE_STORE = {"enabled": True, "action": "rewrite", "storageUrl": "file:///srv/mail-files"}


async def _stored_config(cluster: Cluster, tenant: str) -> object:
    async with cluster.pool.acquire() as conn:
        raw = await conn.fetchval("SELECT large_file_config FROM tenants WHERE id = $1", tenant)
    return json.loads(raw) if isinstance(raw, str) else raw


async def test_without_a_server_base_url_the_tenant_needs_its_own(cluster: Cluster) -> None:
    kube = cluster.kube
    await kube.create(resource("Tenant", "files", tenant_spec(largeFile=FILE_STORE)))
    condition = await wait_not_ready(kube, "Tenant", "files", "InvalidSpec")
    assert "needs largeFile.publicBaseUrl" in condition["message"]
    assert "GMP_DOWNLOAD_BASE_URL" in condition["message"]
    assert await _stored_config(cluster, "files") is None  # nothing written
    await kube.patch(
        "Tenant", "files", {"spec": {"largeFile": {"publicBaseUrl": "https://mail.example.org"}}}
    )
    await wait_ready(kube, "Tenant", "files")
    stored = await _stored_config(cluster, "files")
    assert isinstance(stored, dict)
    assert stored["public_base_url"] == "https://mail.example.org"


async def test_the_servers_base_url_stands_in_for_public_base_url(
    kube: Kube, dsn: str, tmp_path: Path
) -> None:
    async with _cluster(
        kube, dsn, tmp_path, 1, GMP_DOWNLOAD_BASE_URL="https://mail.example.org"
    ) as cluster:
        await kube.create(resource("Tenant", "files", tenant_spec(largeFile=FILE_STORE)))
        await wait_ready(kube, "Tenant", "files")
        stored = await _stored_config(cluster, "files")
        assert isinstance(stored, dict)
        assert stored["storage_url"] == "file:///srv/mail-files"
        assert stored["public_base_url"] is None
