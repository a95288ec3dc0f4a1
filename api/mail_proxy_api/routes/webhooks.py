# SPDX-License-Identifier: Apache-2.0
"""`/webhooks`: a tenant's signed per-event webhook endpoints (SPEC section 13).

    POST   /webhooks                          create; the whsec_ secret is returned once
    GET    /webhooks?tenant_id=               endpoints with their failure state
    GET    /webhooks/{id}?tenant_id=
    PATCH  /webhooks/{id}?tenant_id=          url, event_types, active
    DELETE /webhooks/{id}?tenant_id=
    POST   /webhooks/{id}/rotate-secret       new secret; the old one signs too for the overlap
    POST   /webhooks/{id}/retry-failed        given-up deliveries get a new schedule

A tenant token acts on its own tenant only; the admin names the tenant.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, HTTPException

from mail_proxy.db import webhooks as db_webhooks
from mail_proxy.db.notify import WEBHOOKS_CHANNEL, notify
from mail_proxy.tokens import new_webhook_secret
from mail_proxy_api.audit import record_command
from mail_proxy_api.auth import Caller
from mail_proxy_api.context import Ctx
from mail_proxy_api.routes.commands import scoped_tenant
from mail_proxy_api.schemas.webhooks import (
    RetryResponse,
    RotateSecretBody,
    WebhookCreate,
    WebhookCreated,
    WebhookInfo,
    WebhookSecret,
    WebhooksResponse,
    WebhookUpdate,
)
from mail_proxy_api.strict_json import StrictJsonRoute
from mail_proxy_api.tenant_scope import ensure_tenant, query_or_body_tenant

router = APIRouter(tags=["webhooks"], route_class=StrictJsonRoute)


def _not_found(webhook_id: str) -> HTTPException:
    return HTTPException(404, f"Webhook '{webhook_id}' not found")


def _info(row: Any) -> WebhookInfo:
    return WebhookInfo(**dict(row.items()))


async def _reread(conn: Any, tenant_id: str, webhook_id: str) -> Any:
    row = await db_webhooks.get_webhook(conn, tenant_id=tenant_id, webhook_id=webhook_id)
    if row is None:  # deleted by a concurrent request after our change
        raise _not_found(webhook_id)
    return row


@router.post(
    "/webhooks",
    response_model=WebhookCreated,
    responses={
        404: {"description": "No such tenant"},
        409: {"description": "The id is taken, or the tenant has its maximum of webhooks"},
    },
)
async def create_webhook(
    body: WebhookCreate, caller: Caller, ctx: Ctx, tenant_id: str | None = None
) -> Any:
    tenant_id = scoped_tenant(caller, query_or_body_tenant(tenant_id, body.tenant_id))
    webhook_id = body.id or f"wh_{secrets.token_hex(8)}"
    secret = new_webhook_secret()
    sealed = ctx.box.encrypt(secret)
    assert sealed is not None
    async with ctx.pool.acquire() as conn, conn.transaction():
        await ensure_tenant(conn, tenant_id)
        limit = ctx.settings.webhook_max_per_tenant
        if len(await db_webhooks.list_webhooks(conn, tenant_id=tenant_id)) >= limit:
            raise HTTPException(409, f"a tenant has at most {limit} webhooks; delete one first")
        await db_webhooks.create_webhook(
            conn,
            tenant_id=tenant_id,
            webhook_id=webhook_id,
            url=body.url,
            event_types=body.event_types,
            active=body.active,
            sealed_secret=sealed,
        )
        await record_command(
            conn,
            endpoint="addWebhook",
            tenant_id=tenant_id,
            payload=body.model_dump(exclude={"tenant_id"}) | {"id": webhook_id},
        )
        row = await _reread(conn, tenant_id, webhook_id)
    return WebhookCreated(**dict(row.items()), secret=secret)


@router.get("/webhooks", response_model=WebhooksResponse)
async def list_webhooks(caller: Caller, ctx: Ctx, tenant_id: str | None = None) -> Any:
    tenant_id = scoped_tenant(caller, tenant_id)
    async with ctx.pool.acquire() as conn:
        await ensure_tenant(conn, tenant_id)
        rows = await db_webhooks.list_webhooks(conn, tenant_id=tenant_id)
    return WebhooksResponse(webhooks=[_info(row) for row in rows])


@router.get("/webhooks/{webhook_id}", response_model=WebhookInfo)
async def get_webhook(
    webhook_id: str, caller: Caller, ctx: Ctx, tenant_id: str | None = None
) -> Any:
    tenant_id = scoped_tenant(caller, tenant_id)
    async with ctx.pool.acquire() as conn:
        await ensure_tenant(conn, tenant_id)
        row = await db_webhooks.get_webhook(conn, tenant_id=tenant_id, webhook_id=webhook_id)
    if row is None:
        raise _not_found(webhook_id)
    return _info(row)


@router.patch("/webhooks/{webhook_id}", response_model=WebhookInfo)
async def update_webhook(
    webhook_id: str, body: WebhookUpdate, caller: Caller, ctx: Ctx, tenant_id: str | None = None
) -> Any:
    tenant_id = scoped_tenant(caller, tenant_id)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await ensure_tenant(conn, tenant_id)
        found = await db_webhooks.update_webhook(
            conn,
            tenant_id=tenant_id,
            webhook_id=webhook_id,
            url=body.url,
            set_event_types="event_types" in body.model_fields_set,
            event_types=body.event_types,
            active=body.active,
        )
        if not found:
            raise _not_found(webhook_id)
        await record_command(
            conn,
            endpoint="updateWebhook",
            tenant_id=tenant_id,
            payload=body.model_dump(exclude_unset=True) | {"id": webhook_id},
        )
        row = await _reread(conn, tenant_id, webhook_id)
    return _info(row)


@router.delete("/webhooks/{webhook_id}")
async def delete_webhook(
    webhook_id: str, caller: Caller, ctx: Ctx, tenant_id: str | None = None
) -> dict[str, bool]:
    tenant_id = scoped_tenant(caller, tenant_id)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await ensure_tenant(conn, tenant_id)
        if not await db_webhooks.delete_webhook(conn, tenant_id=tenant_id, webhook_id=webhook_id):
            raise _not_found(webhook_id)
        await record_command(
            conn, endpoint="deleteWebhook", tenant_id=tenant_id, payload={"id": webhook_id}
        )
    return {"ok": True}


@router.post("/webhooks/{webhook_id}/rotate-secret", response_model=WebhookSecret)
async def rotate_secret(
    webhook_id: str,
    caller: Caller,
    ctx: Ctx,
    body: RotateSecretBody | None = None,
    tenant_id: str | None = None,
) -> Any:
    """A new signing secret. Until `previous_secret_until` every request carries two
    signatures (old and new), so receivers can switch to the new secret at any moment."""
    tenant_id = scoped_tenant(caller, tenant_id)
    overlap = body.overlap_seconds if body and body.overlap_seconds is not None else None
    if overlap is None:
        overlap = ctx.settings.webhook_secret_overlap_seconds
    secret = new_webhook_secret()
    async with ctx.pool.acquire() as conn, conn.transaction():
        await ensure_tenant(conn, tenant_id)
        found = await db_webhooks.rotate_secret(
            conn,
            tenant_id=tenant_id,
            webhook_id=webhook_id,
            sealed_secret=ctx.box.encrypt(secret) or "",
            overlap_seconds=overlap,
        )
        if not found:
            raise _not_found(webhook_id)
        await record_command(
            conn,
            endpoint="rotateWebhookSecret",
            tenant_id=tenant_id,
            payload={"id": webhook_id, "overlap_seconds": overlap},
        )
        row = await _reread(conn, tenant_id, webhook_id)
    return WebhookSecret(
        id=webhook_id, secret=secret, previous_secret_until=row["previous_secret_until"]
    )


@router.post("/webhooks/{webhook_id}/retry-failed", response_model=RetryResponse)
async def retry_failed(
    webhook_id: str, caller: Caller, ctx: Ctx, tenant_id: str | None = None
) -> Any:
    tenant_id = scoped_tenant(caller, tenant_id)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await ensure_tenant(conn, tenant_id)
        if await db_webhooks.get_webhook(conn, tenant_id=tenant_id, webhook_id=webhook_id) is None:
            raise _not_found(webhook_id)
        count = await db_webhooks.retry_failed(conn, tenant_id=tenant_id, webhook_id=webhook_id)
        if count:
            await notify(conn, WEBHOOKS_CHANNEL)
    return RetryResponse(requeued=count)
