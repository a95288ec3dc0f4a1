# SPDX-License-Identifier: Apache-2.0
"""`/instance`, `/instance/reload-bounce`, `/command-log`: admin only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from mail_proxy.db import command_log as db_log
from mail_proxy.db import instance as db_instance
from mail_proxy.db.notify import RELOAD_INBOUND_CHANNEL, notify
from mail_proxy.errors import ManagedResource
from mail_proxy.tokens import hash_token
from mail_proxy_api.audit import record_command
from mail_proxy_api.auth import Admin
from mail_proxy_api.context import Ctx
from mail_proxy_api.convert import instance_info
from mail_proxy_api.schemas.bounds import INT64_MAX
from mail_proxy_api.schemas.instance import (
    CommandEntry,
    CommandExportResponse,
    CommandLogResponse,
    ExportEntry,
    InstanceInfo,
    InstanceUpdate,
)
from mail_proxy_api.strict_json import StrictJsonRoute

router = APIRouter(tags=["instance"], route_class=StrictJsonRoute)


@router.get("/instance", response_model=InstanceInfo, response_model_exclude_none=True)
async def get_instance(_: Admin, ctx: Ctx) -> Any:
    async with ctx.pool.acquire() as conn:
        return instance_info(await db_instance.get_instance(conn))


@router.put("/instance")
async def update_instance(body: InstanceUpdate, _: Admin, ctx: Ctx) -> dict[str, bool]:
    """Update instance settings. `api_token` sets the stored admin token (only its hash is kept);
    it takes effect when GMP_API_TOKEN is not set, which otherwise wins."""
    fields = body.model_dump(exclude_none=True, exclude={"api_token"})
    if "bounce_imap_password" in fields:
        fields["bounce_imap_password"] = ctx.box.encrypt(fields["bounce_imap_password"])
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await db_instance.get_instance(conn)
        if row["managed_by"]:
            raise ManagedResource("instance", row["name"], row["managed_by"])
        await db_instance.update_instance(conn, fields=fields)
        if body.api_token is not None:
            await db_instance.set_admin_token_hash(conn, token_hash=hash_token(body.api_token))
        await record_command(
            conn, endpoint="updateInstance", tenant_id=None, payload=body.model_dump()
        )
    return {"ok": True}


@router.post("/instance/reload-bounce")
async def reload_bounce(_: Admin, ctx: Ctx) -> dict[str, bool]:
    """Ask the bounce poller (in whichever pod holds its lock) to reload its settings."""
    async with ctx.pool.acquire() as conn:
        row = await db_instance.get_instance(conn)
        if row["bounce_enabled"] and not row["bounce_imap_host"]:
            raise HTTPException(400, "Bounce enabled but imap_host not configured")
        await notify(conn, RELOAD_INBOUND_CHANNEL)
    return {"ok": True}


@router.get("/command-log", response_model=CommandLogResponse)
async def command_log(
    _: Admin,
    ctx: Ctx,
    tenant_id: str | None = None,
    since_ts: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None,
    until_ts: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None,
    endpoint_filter: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 100,
) -> Any:
    async with ctx.pool.acquire() as conn:
        rows = await db_log.list_commands(
            conn,
            tenant_id=tenant_id,
            since_ts=since_ts,
            until_ts=until_ts,
            endpoint_filter=endpoint_filter,
            limit=limit,
        )
    commands = [CommandEntry(**dict(row.items())) for row in rows]
    return CommandLogResponse(commands=commands, total=len(commands))


@router.get("/command-log/export", response_model=CommandExportResponse)
async def command_log_export(
    _: Admin,
    ctx: Ctx,
    tenant_id: str | None = None,
    since_ts: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None,
    until_ts: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None,
) -> Any:
    async with ctx.pool.acquire() as conn:
        rows = await db_log.export_commands(
            conn, tenant_id=tenant_id, since_ts=since_ts, until_ts=until_ts
        )
    return CommandExportResponse(commands=[ExportEntry(**dict(row.items())) for row in rows])
