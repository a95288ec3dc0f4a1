"""`large_file_config` on the tenant routes: v0.6 shape, validated, admin-only (SPEC section 6)."""

from __future__ import annotations

from typing import Any

import pytest

from mail_proxy.config import Settings
from mail_proxy.encryption import decode_key, generate_key
from tests.integration.api.conftest import Api, running_api

CONFIG = {
    "enabled": True,
    "max_size_mb": 10,
    "storage_url": "s3://bucket/mail-attachments",
    "public_base_url": None,
    "file_ttl_days": 7,  # within SigV4's limit: S3 signs the links, no base URL needed
    "lifespan_after_download_days": None,
    "action": "rewrite",
}


async def test_admin_sets_it_and_reads_back_what_it_sent(api: Api) -> None:
    await api.new_tenant("acme", large_file_config=CONFIG)
    r = await api.client.get("/tenant/acme", headers=api.admin())
    assert r.json()["large_file_config"] == {k: v for k, v in CONFIG.items() if v is not None} | {
        "public_base_url": None,
        "lifespan_after_download_days": None,
    }
    r = await api.client.put(
        "/tenant/acme", json={"large_file_config": {"enabled": False}}, headers=api.admin()
    )
    assert r.status_code == 200
    r = await api.client.get("/tenant/acme", headers=api.admin())
    assert r.json()["large_file_config"] == {"enabled": False}


async def test_a_tenant_key_cannot_change_it(api: Api) -> None:
    key = await api.new_tenant("acme", large_file_config={"enabled": False})
    r = await api.client.put(
        "/tenant/acme",
        json={"name": "ACME", "large_file_config": {**CONFIG, "max_size_mb": 100000}},
        headers={"X-API-Token": key},
    )
    assert r.status_code == 403
    assert r.json() == {"detail": "only the admin token may change large_file_config"}
    r = await api.client.get("/tenant/acme", headers=api.admin())
    assert r.json()["large_file_config"] == {"enabled": False}
    assert r.json().get("name") is None  # nothing of the refused update was applied
    # Other fields stay the tenant's to change.
    r = await api.client.put("/tenant/acme", json={"name": "ACME"}, headers={"X-API-Token": key})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"enabled": True, "action": "shred"}, "action"),
        ({"enabled": True, "max_size_mb": -1}, "max_size_mb"),
        ({"enabled": True, "file_ttl_days": 0}, "file_ttl_days"),
        ({"enabled": True, "file_ttl_days": 3651}, "file_ttl_days"),
        ({"enabled": True, "lifespan_after_download_days": 3651}, "lifespan_after_download_days"),
        ({"enabled": True, "lifespan_after_download_days": 0}, "lifespan_after_download_days"),
        ({"enabled": True, "storage_url": "ftp://x/y"}, "storage_url"),
        ({"enabled": True, "storage_url": "s3://"}, "storage_url"),
        ({"enabled": True, "storage_url": "/tmp/x"}, "storage_url"),
        ({"enabled": True, "public_base_url": "javascript:alert(1)"}, "public_base_url"),
        ({"enabled": True, "action": "rewrite"}, "storage_url"),
        ({"enabled": True, "max_sise_mb": 5}, "max_sise_mb"),
        ({"enabled": "maybe"}, "enabled"),
    ],
)
async def test_unusable_configs_are_422(api: Api, config: dict[str, Any], problem: str) -> None:
    r = await api.client.post(
        "/tenant", json={"id": "acme", "large_file_config": config}, headers=api.admin()
    )
    assert r.status_code == 422, r.text
    assert problem in r.text


FILE_STORE = {"enabled": True, "action": "rewrite", "storage_url": "file:///srv/mail-files"}


async def test_links_need_a_base_url_from_the_tenant_or_the_server(dsn: str) -> None:
    """Issue 12: the Tenant resource's rule too (mail_proxy.large_files.policy.link_base_problem):
    a file:// store (or links past 7 days) needs public_base_url unless the server has
    GMP_DOWNLOAD_BASE_URL."""
    settings = Settings()
    async with running_api(dsn, settings=settings, key=decode_key(generate_key())) as api:
        r = await api.client.post(
            "/tenant", json={"id": "acme", "large_file_config": FILE_STORE}, headers=api.admin()
        )
        assert r.status_code == 422, r.text
        assert "needs public_base_url" in r.json()["detail"]
        assert "GMP_DOWNLOAD_BASE_URL" in r.json()["detail"]
        r = await api.client.get("/tenant/acme", headers=api.admin())
        assert r.status_code == 404  # nothing stored
        await api.new_tenant("acme", large_file_config={"enabled": False})
        for config in (FILE_STORE, {**CONFIG, "file_ttl_days": 8}):
            r = await api.client.put(
                "/tenant/acme", json={"large_file_config": config}, headers=api.admin()
            )
            assert r.status_code == 422, r.text
        r = await api.client.get("/tenant/acme", headers=api.admin())
        assert r.json()["large_file_config"] == {"enabled": False}
        with_base = {**FILE_STORE, "public_base_url": "https://mail.example.org"}
        r = await api.client.put(
            "/tenant/acme", json={"large_file_config": with_base}, headers=api.admin()
        )
        assert r.status_code == 200, r.text

        settings.download_base_url = "https://mail.example.org"  # the server's own base URL
        r = await api.client.post(
            "/tenant", json={"id": "other", "large_file_config": FILE_STORE}, headers=api.admin()
        )
        assert r.status_code == 200, r.text
