"""Request bodies and small helpers shared by the API tests."""

from __future__ import annotations

from typing import Any

from tests.integration.api.conftest import Api


def message(msg_id: str = "m1", tenant_id: str = "acme", **fields: Any) -> dict[str, Any]:
    """A valid add-messages item; keyword arguments override or add fields."""
    body: dict[str, Any] = {
        "id": msg_id,
        "tenant_id": tenant_id,
        "account_id": "smtp1",
        "from": "sender@example.org",
        "to": ["rcpt@example.org"],
        "subject": "Hello",
        "body": "Hi there",
    }
    body.update(fields)
    return body


def token(value: str) -> dict[str, str]:
    return {"X-API-Token": value}


async def add_messages(
    api: Api, messages: list[dict[str, Any]], key: str | None = None, **extra: Any
) -> Any:
    """POST /commands/add-messages (admin unless `key`); returns the httpx response."""
    headers = token(key) if key else api.admin()
    return await api.client.post(
        "/commands/add-messages", json={"messages": messages, **extra}, headers=headers
    )


async def list_messages(api: Api, tenant_id: str = "acme", **params: Any) -> dict[str, Any]:
    r = await api.client.get(
        "/messages", params={"tenant_id": tenant_id, **params}, headers=api.admin()
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def tenant_with_account(api: Api, tenant_id: str = "acme", **fields: Any) -> str:
    """A tenant with one account `smtp1`; returns the tenant's API key."""
    key = await api.new_tenant(tenant_id, **fields)
    await api.new_account(tenant_id)
    return key
