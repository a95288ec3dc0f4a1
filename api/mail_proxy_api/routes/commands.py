# SPDX-License-Identifier: Apache-2.0
"""`/commands/*`: enqueue, delete, clean up, suspend/activate, run-now."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import APIRouter, Header, HTTPException, Response

from mail_proxy import intake
from mail_proxy.addresses import split_recipients
from mail_proxy.db import idempotency as db_idempotency
from mail_proxy.db import messages as db_messages
from mail_proxy.db import recipients as db_recipients
from mail_proxy.db import suppressions as db_suppressions
from mail_proxy.db import tenants as db_tenants
from mail_proxy.db.messages import EnqueueItem
from mail_proxy.db.notify import RUN_NOW_CHANNEL, WORK_CHANNEL, notify
from mail_proxy.encryption import SecretBox
from mail_proxy.ids import valid_message_id
from mail_proxy.priorities import normalise_priority
from mail_proxy.redact import is_secret_key, redact, seal_client_auth, url_may_hold_secret
from mail_proxy_api.audit import record_command
from mail_proxy_api.auth import Caller, Principal
from mail_proxy_api.context import ApiContext, Ctx
from mail_proxy_api.schemas.messages import (
    AddMessagesBody,
    AddMessagesResponse,
    CleanupMessagesBody,
    CleanupMessagesResponse,
    DeleteMessagesBody,
    DeleteMessagesResponse,
    Rejection,
    SuspendResponse,
)
from mail_proxy_api.strict_json import StrictJsonRoute
from mail_proxy_api.tenant_scope import ensure_tenant

router = APIRouter(prefix="/commands", tags=["commands"], route_class=StrictJsonRoute)

TENANT_REQUIRED = "tenant_id is required"
TENANT_NOT_FOUND = "tenant not found"
# The reference's activate answered one string for both failures.
CANNOT_ACTIVATE = "tenant not found or cannot activate single batch from full suspension"


def scoped_tenant(caller: Principal, tenant_id: str | None) -> str:
    """The tenant a scoped route acts on: given, or the caller's own; checked against the token."""
    tenant_id = tenant_id or caller.tenant_id
    if not tenant_id:
        raise HTTPException(400, TENANT_REQUIRED)
    caller.check_tenant(tenant_id)
    return tenant_id


def _prepare(
    body: AddMessagesBody, caller: Principal, box: SecretBox, max_recipients: int
) -> tuple[list[EnqueueItem], list[Rejection], bool]:
    """Items to store, messages refused before storage, and whether a secret needs masking.

    The stored payload is what was sent, normalised (recipients as lists, priority as an int),
    nulls dropped. The whole batch is dumped in one call: per-message dumps cost more than
    everything else on this path.
    """
    default = normalise_priority(body.default_priority)
    items: dict[tuple[str, str], EnqueueItem] = {}
    refused: list[Rejection] = []
    has_secret = False
    for payload in body.model_dump(by_alias=True, exclude_none=True)["messages"]:
        msg_id, tenant_id = payload["id"], payload["tenant_id"]
        if caller.tenant_id is not None and tenant_id != caller.tenant_id:
            # Never stored: it would land in a tenant this token cannot see.
            refused.append(Rejection(id=msg_id or None, reason=intake.NOT_YOUR_TENANT))
            continue
        priority = normalise_priority(payload.get("priority"), default)
        payload["priority"] = priority
        payload["to"] = split_recipients(payload["to"])
        for field in ("cc", "bcc", "reply_to"):
            if field in payload:
                payload[field] = split_recipients(payload[field])
        reason = intake.rejection_reason(payload, max_recipients=max_recipients)
        if not msg_id or not tenant_id:
            refused.append(Rejection(id=msg_id or None, reason=reason or intake.MISSING_ID))
            continue
        if not valid_message_id(msg_id):
            refused.append(Rejection(id=msg_id[:300], reason=intake.INVALID_ID))
            continue
        for attachment in payload.get("attachments", ()):
            if "auth" in attachment:
                # Per-attachment credentials are stored encrypted, like every other secret.
                attachment["auth"] = seal_client_auth(box, attachment["auth"])
                has_secret = True
            elif url_may_hold_secret(attachment.get("storage_path")):
                has_secret = True  # user info or a signed query: masked in the command log
        if any(is_secret_key(name) for name in payload.get("headers") or ()):
            has_secret = True  # e.g. a custom `X-Api-Key` header: masked in the command log
        # A repeated id inside one batch: the last one wins, as sequential upserts would.
        items[(tenant_id, msg_id)] = EnqueueItem(
            id=msg_id,
            tenant_id=tenant_id,
            account_id=payload["account_id"] or None,
            priority=priority,
            payload=payload,
            batch_code=payload.get("batch_code"),
            deferred_ts=payload.get("deferred_ts"),
            reason=reason,
        )
    return list(items.values()), refused, has_secret


async def _apply_suppressions(
    conn: asyncpg.Connection, items: list[EnqueueItem], ctx: ApiContext
) -> list[EnqueueItem]:
    """Refuse messages whose every recipient is suppressed; mark the suppressed recipients of
    the others (intake.SUPPRESSED_KEY) so the sender leaves them out and reports them refused.
    One query for the whole batch."""
    pairs = await asyncio.to_thread(_envelope_pairs, items)
    found = await db_suppressions.suppressed_among(conn, pairs=pairs)
    if not found:
        return items
    by_tenant: dict[str, set[str]] = {}
    for tenant_id, address in found:
        by_tenant.setdefault(tenant_id, set()).add(address)
    out = []
    for item in items:
        suppressed = by_tenant.get(item.tenant_id)
        if item.reason is None and suppressed:
            reason, hit = intake.suppressed_recipients(item.payload, suppressed)
            if hit:
                ctx.metrics.suppressed_recipients.labels(item.tenant_id).inc(len(hit))
            if reason is not None:
                item = dataclasses.replace(item, reason=reason)
            elif hit:
                item.payload[intake.SUPPRESSED_KEY] = hit
        out.append(item)
    return out


def _envelope_pairs(items: list[EnqueueItem]) -> set[tuple[str, str]]:
    return {
        (item.tenant_id, address)
        for item in items
        if item.reason is None
        for address in intake.envelope_addresses(item.payload)
    }


def _json_text(content: Any) -> str:
    try:
        return orjson.dumps(content).decode()
    except TypeError:  # an integer beyond 64 bits in a free-form field: rare, slower path
        return json.dumps(content)


def _json(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code, media_type="application/json")


IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
KEY_IN_USE = "a request with this Idempotency-Key is still being processed; retry later"
KEY_REUSED = "this Idempotency-Key was already used with a different request body"


async def _enqueue_answer(
    conn: asyncpg.Connection, body: AddMessagesBody, caller: Principal, ctx: ApiContext
) -> tuple[int, dict[str, Any]]:
    """Store the batch; the answer's status and body (the reference's shapes)."""
    limit = ctx.settings.max_enqueue_batch
    if len(body.messages) > limit:
        # The reference's shape for a refused batch: {"detail": {"error": ..., "rejected": []}}.
        error = f"Cannot enqueue more than {limit} messages at once"
        return 400, {"detail": {"error": error, "rejected": []}}
    recipients = sum(intake.recipient_count(m.to, m.cc, m.bcc) for m in body.messages)
    if recipients > ctx.settings.max_recipients_per_batch:
        error = (
            f"Cannot enqueue more than {ctx.settings.max_recipients_per_batch} recipients at "
            f"once ({recipients} in this request)"
        )
        return 400, {"detail": {"error": error, "rejected": []}}
    # Address validation costs ~0.2 ms a recipient: done in a thread, so a big batch never
    # holds the event loop (health probes, other requests, an in-process sender).
    items, refused, has_secret = await asyncio.to_thread(
        _prepare, body, caller, ctx.box, ctx.settings.max_recipients_per_message
    )
    tenants = {item.tenant_id for item in items}
    items = await _apply_suppressions(conn, items, ctx)
    # The command log keeps the messages as stored (what a replay would post again); only a
    # batch carrying attachment credentials needs the cost of a masked copy.
    stored = [item.payload for item in items]
    log_payload = _json_text({"messages": redact(stored) if has_secret else stored})
    outcome = await db_messages.enqueue(
        conn,
        items=items,
        now_ts=int(time.time()),
        log_tenant_id=tenants.pop() if len(tenants) == 1 else caller.tenant_id,
        log_payload=log_payload,
    )
    suppressed = [
        (item.tenant_id, item.id, intake.suppressed_as_submitted(item.payload))
        for item in items
        if item.reason is None and item.payload.get(intake.SUPPRESSED_KEY)
    ]
    if suppressed:
        # Every recipient accounted for (SPEC section 13): those left out are refused now.
        await db_recipients.record_suppressed(conn, messages=suppressed, now=time.time())
    rejected = [r.model_dump() for r in refused]
    rejected += [{"id": i, "reason": r} for i, r in outcome.rejected]
    ctx.metrics.enqueued.inc(outcome.queued)
    if outcome.queued == 0 and any(r["reason"] != intake.ALREADY_SENT for r in rejected):
        return 400, {"detail": {"error": None, "rejected": rejected}}
    return 200, {"ok": True, "queued": outcome.queued, "rejected": rejected}


@router.post(
    "/add-messages",
    response_model=AddMessagesResponse,
    responses={
        409: {"description": "The same Idempotency-Key is being processed right now"},
        422: {"description": "Invalid body, or an Idempotency-Key reused with another body"},
    },
)
async def add_messages(
    body: AddMessagesBody,
    caller: Caller,
    ctx: Ctx,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Replays within the TTL (24 h) return the first answer unchanged",
        ),
    ] = None,
) -> Any:
    started = time.perf_counter()
    if idempotency_key is None:
        async with ctx.pool.acquire() as conn:
            status, content = await _enqueue_answer(conn, body, caller, ctx)
    else:
        status, content = await _idempotent_enqueue(body, caller, ctx, idempotency_key)
        if isinstance(content, Response):
            return content
    ctx.metrics.enqueue_latency.observe(time.perf_counter() - started)
    # Answered directly: this route runs thousands of times a second and the shape is fixed
    # (AddMessagesResponse, still declared above for the OpenAPI document).
    return _json(content, status)


async def _idempotent_enqueue(
    body: AddMessagesBody, caller: Principal, ctx: ApiContext, key: str
) -> tuple[int, Any]:
    """The enqueue and its stored answer in one transaction (db.idempotency has the rules)."""
    scope = caller.tenant_id or ""
    hash_ = db_idempotency.request_hash(body.model_dump(mode="json", by_alias=True))
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await db_idempotency.try_lock(conn, scope=scope, key=key):
            raise HTTPException(409, KEY_IN_USE)
        stored = await db_idempotency.find_answer(
            conn, scope=scope, key=key, ttl_seconds=ctx.settings.idempotency_ttl_seconds
        )
        if stored is not None:
            if stored.request_hash != hash_:
                raise HTTPException(422, KEY_REUSED)
            replay = Response(
                stored.body.encode(),
                stored.status,
                media_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
            return stored.status, replay
        status, content = await _enqueue_answer(conn, body, caller, ctx)
        await db_idempotency.store_answer(
            conn, scope=scope, key=key, hash_=hash_, status=status, body=_json_text(content)
        )
    return status, content


@router.post("/delete-messages", response_model=DeleteMessagesResponse)
async def delete_messages(
    caller: Caller, ctx: Ctx, body: DeleteMessagesBody, tenant_id: str | None = None
) -> Any:
    tenant_id = scoped_tenant(caller, tenant_id)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await ensure_tenant(conn, tenant_id)
        removed, not_found = await db_messages.delete_messages(
            conn, tenant_id=tenant_id, ids=body.ids
        )
        await record_command(
            conn, endpoint="deleteMessages", tenant_id=tenant_id, payload=body.model_dump()
        )
    # Ids are unique per tenant, so another tenant's id is simply not found here (the
    # reference leaked which ids other tenants use through `unauthorized`).
    return DeleteMessagesResponse(removed=removed, not_found=not_found, unauthorized=[])


@router.post("/cleanup-messages", response_model=CleanupMessagesResponse)
async def cleanup_messages(
    caller: Caller, ctx: Ctx, body: CleanupMessagesBody, tenant_id: str | None = None
) -> Any:
    tenant_id = scoped_tenant(caller, tenant_id)
    older_than = body.older_than_seconds
    if older_than is None:
        older_than = ctx.settings.report_retention_seconds
    async with ctx.pool.acquire() as conn, conn.transaction():
        await ensure_tenant(conn, tenant_id)
        removed = await db_messages.cleanup_messages(
            conn, tenant_id=tenant_id, before_ts=int(time.time()) - older_than
        )
        await record_command(
            conn, endpoint="cleanupMessages", tenant_id=tenant_id, payload=body.model_dump()
        )
    return CleanupMessagesResponse(removed=removed)


async def _set_suspension(
    ctx: ApiContext,
    caller: Principal,
    tenant_id: str | None,
    batch_code: str | None,
    *,
    suspending: bool,
) -> SuspendResponse:
    if not tenant_id:
        raise HTTPException(400, TENANT_REQUIRED)
    caller.check_tenant(tenant_id)
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT suspended_batches FROM tenants WHERE id = $1 FOR UPDATE", tenant_id
        )
        if row is None:
            raise HTTPException(400, TENANT_NOT_FOUND if suspending else CANNOT_ACTIVATE)
        current = row["suspended_batches"]
        new: str | None
        if suspending:
            new = db_tenants.suspend(current, batch_code)
        else:
            try:
                new = db_tenants.activate(current, batch_code)
            except ValueError:
                raise HTTPException(400, CANNOT_ACTIVATE) from None
        await db_tenants.set_suspended_batches(conn, tenant_id=tenant_id, value=new)
        pending = await db_messages.count_unsent(conn, tenant_id=tenant_id, batch_code=batch_code)
        await record_command(
            conn,
            endpoint="suspend" if suspending else "activate",
            tenant_id=tenant_id,
            payload={"tenant_id": tenant_id, "batch_code": batch_code},
        )
        if not suspending:
            await notify(conn, WORK_CHANNEL)
    return SuspendResponse(
        tenant_id=tenant_id,
        batch_code=batch_code,
        suspended_batches=["*"] if new == "*" else db_tenants.parse_suspended(new),
        pending_messages=pending,
    )


# `tenant_id` is a required query parameter, as in v0.6: leaving it out is a 422 (validation),
# an empty value the reference's 400 `tenant_id is required`.
@router.post("/suspend", response_model=SuspendResponse, response_model_exclude_none=True)
async def suspend(
    caller: Caller, ctx: Ctx, tenant_id: str, batch_code: str | None = None
) -> SuspendResponse:
    return await _set_suspension(ctx, caller, tenant_id, batch_code, suspending=True)


@router.post("/activate", response_model=SuspendResponse, response_model_exclude_none=True)
async def activate(
    caller: Caller, ctx: Ctx, tenant_id: str, batch_code: str | None = None
) -> SuspendResponse:
    return await _set_suspension(ctx, caller, tenant_id, batch_code, suspending=False)


@router.post("/run-now")
async def run_now(caller: Caller, ctx: Ctx, tenant_id: str | None = None) -> dict[str, bool]:
    """Wake senders and reporters in every process. The tenant (a tenant token's own, or the
    `tenant_id` an admin names) also gets its delivery report now, do-not-disturb or not."""
    if tenant_id is not None:
        caller.check_tenant(tenant_id)
    target = caller.tenant_id or tenant_id
    async with ctx.pool.acquire() as conn, conn.transaction():
        if target is not None:
            if not await db_tenants.tenant_exists(conn, tenant_id=target):
                raise HTTPException(404, f"Tenant '{target}' not found")
            await db_tenants.request_sync_now(conn, tenant_id=target)
        await notify(conn, WORK_CHANNEL)
        await notify(conn, RUN_NOW_CHANNEL, target or "")
    return {"ok": True}
