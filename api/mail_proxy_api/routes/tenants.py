# SPDX-License-Identifier: BUSL-1.1
"""`/tenant`, `/tenants`, `/tenant/{id}`, API keys and sync status."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
from fastapi import APIRouter, HTTPException

from mail_proxy.db import tenants as db_tenants
from mail_proxy.db.mailboxes import set_bounce_config
from mail_proxy.db.notify import RELOAD_INBOUND_CHANNEL, notify
from mail_proxy.errors import ManagedResource
from mail_proxy.large_files.policy import link_base_problem
from mail_proxy.redact import MASK, restore_masked_url, seal_client_auth
from mail_proxy.tokens import hash_token, new_token
from mail_proxy_api.audit import record_command
from mail_proxy_api.auth import Admin, Caller, Principal
from mail_proxy_api.context import ApiContext, Ctx
from mail_proxy_api.convert import shown_url, tenant_info
from mail_proxy_api.schemas.bounce import BounceMailbox
from mail_proxy_api.schemas.tenants import (
    ApiKeyBody,
    ApiKeyResponse,
    SyncStatusResponse,
    SyncStatusTenant,
    TenantCreated,
    TenantInfo,
    TenantPayload,
    TenantsResponse,
    TenantUpdate,
)
from mail_proxy_api.strict_json import StrictJsonRoute

router = APIRouter(tags=["tenants"], route_class=StrictJsonRoute)


def _not_found(tenant_id: str) -> HTTPException:
    return HTTPException(404, f"Tenant '{tenant_id}' not found")


# Fields that bound the tenant's resource use: only the admin sets them (SPEC section 6).
# Fields that bound a tenant's resource use or access: the admin's alone (issue 9).
ADMIN_ONLY_FIELDS = ("active", "large_file_config", "rate_limits")


def _refuse_admin_only(caller: Principal, fields: dict[str, Any]) -> None:
    if caller.is_admin:
        return
    named = [name for name in ADMIN_ONLY_FIELDS if name in fields]
    if named:
        raise HTTPException(403, f"only the admin token may change {', '.join(named)}")


def _large_file_config(
    ctx: ApiContext, body: TenantPayload | TenantUpdate
) -> dict[str, Any] | None:
    """The config as the client sent it (v0.6 echoes it back), validated; 422 when its
    download links could never be built (`link_base_problem`, the Tenant resource's rule too)."""
    config = body.large_file_config
    if config is None:
        return None
    problem = link_base_problem(config.model_dump(), ctx.settings.download_base_url)
    if problem is not None:
        raise HTTPException(422, problem)
    return config.model_dump(exclude_unset=True)


async def _store_bounce_config(
    ctx: ApiContext,
    conn: asyncpg.Connection,
    tenant_id: str,
    config: BounceMailbox | None,
    existing: Any,
) -> None:
    """Store the tenant's bounce mailbox (password encrypted; a masked one keeps the stored
    one) and wake the pollers of every process so it applies at once."""
    previous = existing["bounce_config"] if existing is not None else None
    document = None if config is None else config.model_dump()
    if document is not None:
        password = document.get("imap_password")
        if password == MASK:
            document["imap_password"] = (previous or {}).get("imap_password")
        elif password:
            document["imap_password"] = ctx.box.encrypt(password)
    if document == previous:
        return
    await set_bounce_config(conn, tenant_id=tenant_id, config=document)
    await notify(conn, RELOAD_INBOUND_CHANNEL)


def _keep_masked_urls(fields: dict[str, Any], existing: Any) -> None:
    """URLs are shown masked (user info, query values); writing back what was shown keeps
    the stored URL, as a masked password keeps the stored password."""
    if existing is None:
        return
    if "client_base_url" in fields:
        fields["client_base_url"] = restore_masked_url(
            fields["client_base_url"], existing["client_base_url"]
        )
    config, stored = fields.get("large_file_config"), existing["large_file_config"]
    if isinstance(config, dict) and isinstance(stored, dict):
        for key in ("storage_url", "public_base_url"):
            if key in config:
                config[key] = restore_masked_url(config[key], stored.get(key))


def _refuse_if_managed(row: Any, tenant_id: str) -> None:
    if row is not None and row["managed_by"]:
        raise ManagedResource("tenant", tenant_id, row["managed_by"])


@router.post("/tenant", response_model=TenantCreated, response_model_exclude_none=True)
async def add_tenant(body: TenantPayload, _: Admin, ctx: Ctx) -> Any:
    """Create or replace a tenant; a new tenant's API key is returned once."""
    fields = body.model_dump(exclude={"id", "client_auth"})
    fields["large_file_config"] = _large_file_config(ctx, body)
    if body.rate_limits is not None:
        fields["rate_limits"] = body.rate_limits.model_dump(exclude_none=True)
    fields["client_auth"] = (
        body.client_auth.model_dump(exclude_none=True) if body.client_auth else None
    )
    api_key = new_token()
    async with ctx.pool.acquire() as conn, conn.transaction():
        existing = await db_tenants.get_tenant(conn, tenant_id=body.id)
        _refuse_if_managed(existing, body.id)
        _keep_masked_urls(fields, existing)
        fields["client_auth"] = seal_client_auth(
            ctx.box, fields["client_auth"], existing["client_auth"] if existing else None
        )
        created = await db_tenants.upsert_tenant(
            conn, tenant_id=body.id, fields=fields, api_key_hash=hash_token(api_key)
        )
        # Create-or-replace: an absent bounce_config removes the tenant's own mailbox.
        await _store_bounce_config(ctx, conn, body.id, body.bounce_config, existing)
        await record_command(
            conn, endpoint="addTenant", tenant_id=body.id, payload=body.model_dump()
        )
    return TenantCreated(api_key=api_key if created else None)


@router.get("/tenants", response_model=TenantsResponse, response_model_exclude_none=True)
async def list_tenants(_: Admin, ctx: Ctx, active_only: bool = False) -> Any:
    async with ctx.pool.acquire() as conn:
        rows = await db_tenants.list_tenants(conn, active_only=active_only)
    return TenantsResponse(tenants=[tenant_info(row) for row in rows])


@router.get("/tenants/sync-status", response_model=SyncStatusResponse)
async def sync_status(_: Admin, ctx: Ctx) -> Any:
    interval = ctx.settings.sync_interval_seconds
    now = time.time()
    async with ctx.pool.acquire() as conn:
        rows = await db_tenants.list_tenants(conn, active_only=False)
    tenants = []
    for row in rows:
        last = row["last_sync_ts"]
        dnd_until = row["dnd_until"]
        tenants.append(
            SyncStatusTenant(
                id=row["id"],
                name=row["name"],
                active=row["active"],
                client_base_url=shown_url(row["client_base_url"]),
                last_sync_ts=last,
                next_sync_due=not last or now - last >= interval,
                in_dnd=dnd_until is not None and dnd_until > now,
                consecutive_failures=row["sync_failures"],
                retry_at=row["sync_retry_at"],
                last_error=row["last_sync_error"],
            )
        )
    return SyncStatusResponse(sync_interval_seconds=interval, tenants=tenants)


@router.get("/tenant/{tenant_id}", response_model=TenantInfo, response_model_exclude_none=True)
async def get_tenant(tenant_id: str, caller: Caller, ctx: Ctx) -> Any:
    caller.check_tenant(tenant_id)
    async with ctx.pool.acquire() as conn:
        row = await db_tenants.get_tenant(conn, tenant_id=tenant_id)
    if row is None:
        raise _not_found(tenant_id)
    return tenant_info(row)


@router.put("/tenant/{tenant_id}")
async def update_tenant(
    tenant_id: str, body: TenantUpdate, caller: Caller, ctx: Ctx
) -> dict[str, bool]:
    caller.check_tenant(tenant_id)
    fields = body.model_dump(exclude_none=True)
    _refuse_admin_only(caller, fields)
    if "large_file_config" in fields:
        fields["large_file_config"] = _large_file_config(ctx, body)
    async with ctx.pool.acquire() as conn, conn.transaction():
        existing = await db_tenants.get_tenant(conn, tenant_id=tenant_id)
        if existing is None:
            raise _not_found(tenant_id)
        _refuse_if_managed(existing, tenant_id)
        _keep_masked_urls(fields, existing)
        if "client_auth" in fields:
            fields["client_auth"] = seal_client_auth(
                ctx.box, fields["client_auth"], existing["client_auth"]
            )
        await db_tenants.update_tenant(conn, tenant_id=tenant_id, fields=fields)
        if body.bounce_config is not None:
            await _store_bounce_config(ctx, conn, tenant_id, body.bounce_config, existing)
        await record_command(
            conn,
            endpoint="updateTenant",
            tenant_id=tenant_id,
            payload={"id": tenant_id, **body.model_dump(exclude_none=True)},
        )
    return {"ok": True}


@router.delete("/tenant/{tenant_id}")
async def delete_tenant(tenant_id: str, _: Admin, ctx: Ctx) -> dict[str, bool]:
    async with ctx.pool.acquire() as conn, conn.transaction():
        existing = await db_tenants.get_tenant(conn, tenant_id=tenant_id)
        if existing is None:
            raise _not_found(tenant_id)
        _refuse_if_managed(existing, tenant_id)
        await db_tenants.delete_tenant(conn, tenant_id=tenant_id)
        await record_command(
            conn, endpoint="deleteTenant", tenant_id=tenant_id, payload={"id": tenant_id}
        )
    return {"ok": True}


@router.post("/tenant/{tenant_id}/api-key", response_model=ApiKeyResponse)
async def create_api_key(tenant_id: str, _: Admin, ctx: Ctx, body: ApiKeyBody | None = None) -> Any:
    """A new key replaces the old one at once; optional `expires_at` (epoch seconds)."""
    api_key = new_token()
    expires_at = body.expires_at if body else None
    if expires_at is not None and expires_at <= time.time():
        # It would replace the working key with one that never works.
        raise HTTPException(400, "expires_at is in the past")
    async with ctx.pool.acquire() as conn, conn.transaction():
        existing = await db_tenants.get_tenant(conn, tenant_id=tenant_id)
        if existing is None:
            raise _not_found(tenant_id)
        _refuse_if_managed(existing, tenant_id)
        await db_tenants.set_api_key(
            conn, tenant_id=tenant_id, key_hash=hash_token(api_key), expires_at=expires_at
        )
        await record_command(
            conn,
            endpoint="createApiKey",
            tenant_id=tenant_id,
            payload={"id": tenant_id, "expires_at": expires_at},
        )
    return ApiKeyResponse(api_key=api_key)


@router.delete("/tenant/{tenant_id}/api-key")
async def revoke_api_key(tenant_id: str, _: Admin, ctx: Ctx) -> dict[str, bool]:
    async with ctx.pool.acquire() as conn, conn.transaction():
        existing = await db_tenants.get_tenant(conn, tenant_id=tenant_id)
        if existing is None:
            raise _not_found(tenant_id)
        _refuse_if_managed(existing, tenant_id)
        await db_tenants.set_api_key(conn, tenant_id=tenant_id, key_hash=None, expires_at=None)
        await record_command(
            conn, endpoint="revokeApiKey", tenant_id=tenant_id, payload={"id": tenant_id}
        )
    return {"ok": True}
