# SPDX-License-Identifier: Apache-2.0
"""`GET /messages`: a tenant's messages, paginated, optionally with their event history;
`GET /messages/{id}/events`: one message's full history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from mail_proxy.db import messages as db_messages
from mail_proxy.db import recipients as db_recipients
from mail_proxy.db.history import message_history
from mail_proxy_api.auth import Caller
from mail_proxy_api.context import Ctx
from mail_proxy_api.convert import message_record
from mail_proxy_api.routes.commands import scoped_tenant
from mail_proxy_api.schemas.bounds import INT16_MAX, INT64_MAX
from mail_proxy_api.schemas.messages import HistoryEvent, MessageEventsResponse, MessagesResponse
from mail_proxy_api.strict_json import StrictJsonRoute
from mail_proxy_api.tenant_scope import ensure_tenant

router = APIRouter(tags=["messages"], route_class=StrictJsonRoute)


def _parse_cursor(cursor: str | None) -> tuple[int, int] | None:
    """`"<priority>:<pk>"` as `next_cursor` gives it; a value no stored row can have (priority
    beyond `smallint`, pk beyond `bigint`) is as invalid as garbage: 400, never a database error."""
    if cursor is None:
        return None
    try:
        priority_text, pk_text = cursor.split(":", 1)
        priority, pk = int(priority_text), int(pk_text)
    except ValueError:
        raise HTTPException(400, f"invalid cursor: {cursor!r}") from None
    if not (0 <= priority <= INT16_MAX and 0 <= pk <= INT64_MAX):
        raise HTTPException(400, f"invalid cursor: {cursor!r}")
    return priority, pk


def _parse_status(status: str | None) -> list[str] | None:
    if status is None or status == "all":
        return None
    states = [part.strip() for part in status.split(",") if part.strip()]
    unknown = [s for s in states if s not in db_messages.STATUSES]
    if unknown:
        allowed = ", ".join((*db_messages.STATUSES, "all"))
        raise HTTPException(400, f"unknown status {unknown[0]!r}; use one of {allowed}")
    return states


@router.get("/messages", response_model=MessagesResponse, response_model_exclude_none=True)
async def list_messages(
    caller: Caller,
    ctx: Ctx,
    tenant_id: str | None = None,
    active_only: bool = False,
    include_history: bool = False,
    status: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Any:
    tenant_id = scoped_tenant(caller, tenant_id)
    page = limit or ctx.settings.messages_page_size
    async with ctx.pool.acquire() as conn:
        await ensure_tenant(conn, tenant_id)
        rows = await db_messages.list_messages(
            conn,
            tenant_id=tenant_id,
            active_only=active_only,
            states=_parse_status(status),
            after=_parse_cursor(cursor),
            limit=page + 1,
        )
        more = len(rows) > page
        rows = rows[:page]
        histories = (
            await db_messages.message_histories(conn, message_pks=[r["pk"] for r in rows])
            if include_history
            else {}
        )
        recipients = await db_recipients.for_messages(conn, message_pks=[r["pk"] for r in rows])
    records = [
        message_record(
            r, histories.get(r["pk"]) if include_history else None, recipients.get(r["pk"])
        )
        for r in rows
    ]
    next_cursor = f"{rows[-1]['priority']}:{rows[-1]['pk']}" if more else None
    return MessagesResponse(messages=records, next_cursor=next_cursor)


@router.get("/messages/{message_id}/events", response_model=MessageEventsResponse)
async def message_events(
    message_id: str, caller: Caller, ctx: Ctx, tenant_id: str | None = None
) -> Any:
    """Every event of one message, oldest first: `queued`, then what was stored (deferred with
    its reason, sent, error, bounce, pec_*, ...). 404 when the tenant has no such message."""
    tenant_id = scoped_tenant(caller, tenant_id)
    async with ctx.pool.acquire() as conn:
        await ensure_tenant(conn, tenant_id)
        history = await message_history(conn, tenant_id=tenant_id, message_id=message_id)
    if history is None:
        raise HTTPException(404, f"Message '{message_id}' not found")
    return MessageEventsResponse(
        id=history.id,
        tenant_id=history.tenant_id,
        state=history.state,
        events=[HistoryEvent(**vars(event)) for event in history.events],
        recipients=history.recipients,
    )
