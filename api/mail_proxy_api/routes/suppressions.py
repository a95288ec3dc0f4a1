# SPDX-License-Identifier: BUSL-1.1
"""`/suppressions`: a tenant's suppression list (SPEC section 13), tenant-scoped like every route.

    GET    /suppressions?tenant_id=&limit=&cursor=&contains=   one page, in address order
    POST   /suppressions  {"tenant_id", "address", "reason"?}  manual add
    DELETE /suppressions/{address}?tenant_id=                  remove (404 when not listed)

A tenant token acts on its own tenant (tenant_id optional); the admin names the tenant.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from mail_proxy.db import suppressions as db_suppressions
from mail_proxy_api.audit import record_command
from mail_proxy_api.auth import Caller
from mail_proxy_api.context import Ctx
from mail_proxy_api.convert import iso
from mail_proxy_api.routes.commands import scoped_tenant
from mail_proxy_api.schemas.suppressions import (
    SuppressionAdd,
    SuppressionAdded,
    SuppressionInfo,
    SuppressionsResponse,
    bare_address,
)
from mail_proxy_api.strict_json import StrictJsonRoute
from mail_proxy_api.tenant_scope import ensure_tenant, query_or_body_tenant

router = APIRouter(tags=["suppressions"], route_class=StrictJsonRoute)


def _info(entry: db_suppressions.Suppression) -> SuppressionInfo:
    return SuppressionInfo(
        address=entry.address,
        tenant_id=entry.tenant_id,
        reason=entry.reason,
        source=entry.source,
        message_id=entry.message_id,
        bounce_code=entry.bounce_code,
        created_at=iso(entry.created_at) or "",
    )


def _parse_cursor(cursor: str | None) -> str | None:
    """`next_cursor` is the last address of the previous page as stored (bare, lowercased, with
    an @): anything else was not given by this route and answers 400 like `/messages`, instead
    of silently restarting at the first page."""
    if cursor is None:
        return None
    if (
        "@" not in cursor
        or cursor != db_suppressions.normalise(cursor)
        or any(ch.isspace() or not ch.isprintable() for ch in cursor)
    ):
        raise HTTPException(400, f"invalid cursor: {cursor!r}")
    return cursor


@router.get("/suppressions", response_model=SuppressionsResponse, response_model_exclude_none=True)
async def list_suppressions(
    caller: Caller,
    ctx: Ctx,
    tenant_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: Annotated[str | None, Query(max_length=320)] = None,
    contains: Annotated[str | None, Query(min_length=1, max_length=320)] = None,
) -> Any:
    tenant_id = scoped_tenant(caller, tenant_id)
    after = _parse_cursor(cursor)
    async with ctx.pool.acquire() as conn:
        await ensure_tenant(conn, tenant_id)
        rows = await db_suppressions.list_suppressions(
            conn, tenant_id=tenant_id, after=after, limit=limit + 1, contains=contains
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return SuppressionsResponse(
        suppressions=[_info(row) for row in rows],
        next_cursor=rows[-1].address if more else None,
    )


@router.post("/suppressions", response_model=SuppressionAdded)
async def add_suppression(
    body: SuppressionAdd, caller: Caller, ctx: Ctx, tenant_id: str | None = None
) -> Any:
    tenant_id = scoped_tenant(caller, query_or_body_tenant(tenant_id, body.tenant_id))
    async with ctx.pool.acquire() as conn, conn.transaction():
        await ensure_tenant(conn, tenant_id)
        added = await db_suppressions.add_suppression(
            conn,
            tenant_id=tenant_id,
            address=body.address,
            reason=body.reason,
            source=db_suppressions.SOURCE_MANUAL,
        )
        await record_command(
            conn,
            endpoint="addSuppression",
            tenant_id=tenant_id,
            payload={"tenant_id": tenant_id, "address": body.address, "reason": body.reason},
        )
    return SuppressionAdded(added=added)


@router.delete("/suppressions/{address}")
async def remove_suppression(
    address: str, caller: Caller, ctx: Ctx, tenant_id: str | None = None
) -> dict[str, bool]:
    tenant_id = scoped_tenant(caller, tenant_id)
    try:
        bare = bare_address(address)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    async with ctx.pool.acquire() as conn, conn.transaction():
        await ensure_tenant(conn, tenant_id)
        if not await db_suppressions.remove_suppression(conn, tenant_id=tenant_id, address=bare):
            raise HTTPException(404, f"Address '{bare}' is not suppressed")
        await record_command(
            conn,
            endpoint="removeSuppression",
            tenant_id=tenant_id,
            payload={"tenant_id": tenant_id, "address": bare},
        )
    return {"ok": True}
