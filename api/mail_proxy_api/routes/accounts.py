# SPDX-License-Identifier: Apache-2.0
"""`/account`, `/accounts`, `/account/{id}`: a tenant's SMTP accounts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from mail_proxy.db import accounts as db_accounts
from mail_proxy.db.notify import RELOAD_INBOUND_CHANNEL, notify
from mail_proxy.errors import ManagedResource
from mail_proxy_api.audit import record_command
from mail_proxy_api.auth import Caller
from mail_proxy_api.context import Ctx
from mail_proxy_api.convert import account_info
from mail_proxy_api.routes.commands import scoped_tenant
from mail_proxy_api.schemas.accounts import AccountPayload, AccountsResponse
from mail_proxy_api.strict_json import StrictJsonRoute
from mail_proxy_api.tenant_scope import ensure_tenant

router = APIRouter(tags=["accounts"], route_class=StrictJsonRoute)


@router.post("/account")
async def add_account(body: AccountPayload, caller: Caller, ctx: Ctx) -> dict[str, bool]:
    caller.check_tenant(body.tenant_id)
    fields: dict[str, Any] = body.model_dump(exclude={"id", "tenant_id", "user"})
    fields["username"] = body.user
    fields["password"] = ctx.box.encrypt(body.password)
    fields["imap_password"] = ctx.box.encrypt(body.imap_password)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await ensure_tenant(conn, body.tenant_id)
        existing = await db_accounts.get_account(conn, tenant_id=body.tenant_id, account_id=body.id)
        if existing is not None and existing["managed_by"]:
            raise ManagedResource("account", body.id, existing["managed_by"])
        await db_accounts.upsert_account(
            conn, tenant_id=body.tenant_id, account_id=body.id, fields=fields
        )
        await record_command(
            conn, endpoint="addAccount", tenant_id=body.tenant_id, payload=body.model_dump()
        )
        if body.is_pec_account or (existing is not None and existing["is_pec_account"]):
            # Its PEC mailbox is polled (or no longer) in every process, without a restart.
            await notify(conn, RELOAD_INBOUND_CHANNEL)
    return {"ok": True}


@router.get("/accounts", response_model=AccountsResponse, response_model_exclude_none=True)
async def list_accounts(caller: Caller, ctx: Ctx, tenant_id: str | None = None) -> Any:
    tenant_id = scoped_tenant(caller, tenant_id)
    async with ctx.pool.acquire() as conn:
        await ensure_tenant(conn, tenant_id)
        rows = await db_accounts.list_accounts(conn, tenant_id=tenant_id)
    return AccountsResponse(accounts=[account_info(row) for row in rows])


@router.delete("/account/{account_id}")
async def delete_account(
    account_id: str, caller: Caller, ctx: Ctx, tenant_id: str | None = None
) -> dict[str, bool]:
    tenant_id = scoped_tenant(caller, tenant_id)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await ensure_tenant(conn, tenant_id)
        existing = await db_accounts.get_account(conn, tenant_id=tenant_id, account_id=account_id)
        if existing is None:
            raise HTTPException(400, "account not found or not owned by tenant")
        if existing["managed_by"]:
            raise ManagedResource("account", account_id, existing["managed_by"])
        await db_accounts.delete_account(conn, tenant_id=tenant_id, account_id=account_id)
        await record_command(
            conn,
            endpoint="deleteAccount",
            tenant_id=tenant_id,
            payload={"id": account_id, "tenant_id": tenant_id},
        )
    return {"ok": True}
