"""`GMP_API_TOKEN`: when set it is the admin token, and a stored (generated) one stops working."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from mail_proxy.config import Settings
from mail_proxy.encryption import decode_key, generate_key
from tests.integration.api.conftest import running_api
from tests.integration.api.payloads import token

ENV_TOKEN = "env-admin-token-for-this-test-only"


async def test_the_env_token_is_admin_and_the_stored_one_is_refused(dsn: str) -> None:
    settings = Settings(api_token=SecretStr(ENV_TOKEN))
    async with running_api(dsn, settings=settings, key=decode_key(generate_key())) as api:
        r = await api.client.get("/instance", headers=token(ENV_TOKEN))
        assert r.status_code == 200, r.text
        r = await api.client.post("/tenant", json={"id": "acme"}, headers=token(ENV_TOKEN))
        tenant_key = r.json()["api_key"]

        r = await api.client.get("/instance", headers=api.admin())  # the generated token
        assert (r.status_code, r.json()) == (401, {"detail": "Invalid or missing API token"})
        r = await api.client.get("/status", headers=api.admin())
        assert r.status_code == 401
        # Tenant tokens keep working beside the env token.
        r = await api.client.get("/tenant/acme", headers=token(tenant_key))
        assert r.status_code == 200


@pytest.mark.parametrize("value", [ENV_TOKEN[:-1], ENV_TOKEN + "x", ENV_TOKEN.upper(), ""])
async def test_near_misses_of_the_env_token_are_refused(dsn: str, value: str) -> None:
    settings = Settings(api_token=SecretStr(ENV_TOKEN))
    async with running_api(dsn, settings=settings) as api:
        r = await api.client.get("/instance", headers=token(value) if value else {})
        assert r.status_code == 401


def test_settings_read_the_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GMP_API_TOKEN", ENV_TOKEN)
    settings = Settings()
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == ENV_TOKEN
    assert ENV_TOKEN not in repr(settings)
