# SPDX-License-Identifier: BUSL-1.1
"""Provider feedback: bounce and complaint notifications from SES, SendGrid, Mailgun, Postmark.

    POST   /providers/{provider}/{tenant_id}     the provider calls this: verified by its own
                                                 signature or credentials (no X-API-Token);
                                                 401 when not proven (or a Mailgun/SendGrid
                                                 signature older than the freshness window),
                                                 400 for an unknown shape, 503 + Retry-After
                                                 when an SNS certificate cannot be fetched now
    GET    /providers?tenant_id=                 a tenant's provider settings (secrets masked)
    PUT    /providers/{provider}?tenant_id=      set them (admin or the tenant itself)
    DELETE /providers/{provider}?tenant_id=

Verified notifications become the same `bounce` events and suppression entries as IMAP
bounces (`mail_proxy.db.provider_feedback`).
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request
from pydantic import ValidationError

from mail_proxy.db import provider_feedback as db
from mail_proxy.db.bounces import SuppressionPolicy
from mail_proxy.feedback import mailgun, postmark, sendgrid, ses
from mail_proxy.feedback.events import (
    PROVIDERS,
    FeedbackError,
    FeedbackEvent,
    PayloadInvalid,
    SignatureInvalid,
    VerificationBusy,
)
from mail_proxy.redact import redact
from mail_proxy_api.audit import record_command
from mail_proxy_api.auth import Caller
from mail_proxy_api.context import ApiContext, Ctx
from mail_proxy_api.routes.commands import scoped_tenant
from mail_proxy_api.schemas.providers import (
    SETTINGS_MODELS,
    NotificationAccepted,
    ProviderInfo,
    ProvidersResponse,
)
from mail_proxy_api.strict_json import StrictJsonRoute
from mail_proxy_api.tenant_scope import ensure_tenant

log = logging.getLogger(__name__)
router = APIRouter(tags=["provider feedback"], route_class=StrictJsonRoute)


def _known(provider: str) -> None:
    if provider not in PROVIDERS:
        raise HTTPException(
            404, f"unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}"
        )


def _sealed(ctx: ApiContext, provider: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Stored form: secrets under `token`/`password`, encrypted (rotate-key covers them)."""
    if provider == "mailgun":
        settings = {"token": settings["signing_key"]}
    out = dict(settings)
    for key in ("token", "password"):
        if out.get(key):
            out[key] = ctx.box.encrypt(out[key])
    return {k: v for k, v in out.items() if v is not None}


def _opened(ctx: ApiContext, config: dict[str, Any]) -> dict[str, Any]:
    out = dict(config)
    for key in ("token", "password"):
        if isinstance(out.get(key), str):
            out[key] = ctx.box.decrypt(out[key])
    return out


def _info(provider: str, tenant_id: str, config: dict[str, Any], updated_at: Any) -> ProviderInfo:
    return ProviderInfo(
        provider=provider,
        tenant_id=tenant_id,
        settings=redact(config),
        notification_path=f"/providers/{provider}/{tenant_id}",
        updated_at=updated_at,
    )


@router.get("/providers", response_model=ProvidersResponse)
async def list_providers(caller: Caller, ctx: Ctx, tenant_id: str | None = None) -> Any:
    tenant_id = scoped_tenant(caller, tenant_id)
    async with ctx.pool.acquire() as conn:
        await ensure_tenant(conn, tenant_id)
        rows = await db.list_configs(conn, tenant_id=tenant_id)
    return ProvidersResponse(
        providers=[_info(r["provider"], tenant_id, r["config"], r["updated_at"]) for r in rows]
    )


@router.put("/providers/{provider}", response_model=ProviderInfo)
async def put_provider(
    provider: str,
    body: Annotated[dict[str, Any], Body()],
    caller: Caller,
    ctx: Ctx,
    tenant_id: str | None = None,
) -> Any:
    """Body by provider: ses `{"topic_arns": [...]}`, sendgrid `{"public_key"}`, mailgun
    `{"signing_key"}`, postmark `{"user", "password"}` and/or `{"token"}`."""
    tenant_id = scoped_tenant(caller, tenant_id)  # authorization first: 401 before anything
    _known(provider)
    try:
        settings = SETTINGS_MODELS[provider].model_validate(body)
    except ValidationError as exc:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        raise HTTPException(422, errors) from None
    async with ctx.pool.acquire() as conn, conn.transaction():
        await ensure_tenant(conn, tenant_id)
        config = _sealed(ctx, provider, settings.model_dump(exclude_none=True))
        await db.put_config(conn, tenant_id=tenant_id, provider=provider, config=config)
        await record_command(
            conn,
            endpoint="setProviderFeedback",
            tenant_id=tenant_id,
            payload={"provider": provider, "settings": config},
        )
        rows = await db.list_configs(conn, tenant_id=tenant_id)
    row = next(r for r in rows if r["provider"] == provider)
    return _info(provider, tenant_id, row["config"], row["updated_at"])


@router.delete("/providers/{provider}")
async def delete_provider(
    provider: str, caller: Caller, ctx: Ctx, tenant_id: str | None = None
) -> dict[str, bool]:
    tenant_id = scoped_tenant(caller, tenant_id)  # authorization first: 401 before anything
    _known(provider)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await ensure_tenant(conn, tenant_id)
        if not await db.delete_config(conn, tenant_id=tenant_id, provider=provider):
            raise HTTPException(404, f"no {provider} settings for tenant '{tenant_id}'")
        await record_command(
            conn,
            endpoint="deleteProviderFeedback",
            tenant_id=tenant_id,
            payload={"provider": provider},
        )
    return {"ok": True}


async def _ses(
    ctx: ApiContext, config: dict[str, Any], body: bytes, now: int
) -> tuple[list[FeedbackEvent], bool]:
    envelope = ses.parse_envelope(body)
    # The topic first: a notification from a topic the tenant did not configure costs no fetch.
    ses.check_topic(envelope, list(config.get("topic_arns") or ()))
    pattern = ctx.settings.sns_certificate_host_pattern
    certificate = await ctx.sns.certificate(
        str(envelope.get("SigningCertURL")),
        pattern,
        fetches_per_minute=ctx.settings.sns_certificate_fetches_per_minute,
    )
    ses.verify(envelope, certificate)
    if envelope["Type"] == "SubscriptionConfirmation":
        await ctx.sns.confirm(envelope.get("SubscribeURL"), pattern)
        return [], True
    if envelope["Type"] != "Notification":
        return [], False
    return ses.notification_events(envelope, now), False


async def _verified_events(
    ctx: ApiContext, provider: str, config: dict[str, Any], request: Request, now: int
) -> tuple[list[FeedbackEvent], bool, str | None]:
    """The notification's events, whether it was an SNS subscription confirmation, and its
    replay key: set when the signature does not cover the body (Mailgun signs only
    timestamp + token), so a signature is honoured once and a captured one cannot carry
    other events."""
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    if provider == "ses":
        return (*await _ses(ctx, config, body, now), None)
    secrets = _opened(ctx, config)
    max_age = ctx.settings.provider_signature_max_age_seconds
    if provider == "sendgrid":
        sendgrid.verify(headers, body, str(config.get("public_key", "")), now=now, max_age=max_age)
        return sendgrid.events(body, now), False, None
    if provider == "mailgun":
        payload = mailgun.parse(body)
        mailgun.verify(payload, str(secrets.get("token") or ""), now=now, max_age=max_age)
        return mailgun.events(payload, now), False, mailgun.replay_key(payload)
    postmark.verify(headers, secrets)
    return postmark.events(body, now), False, None


@router.post(
    "/providers/{provider}/{tenant_id}",
    response_model=NotificationAccepted,
    responses={
        400: {"description": "Not the provider's documented shape"},
        401: {"description": "Not proven to come from the provider (signature, credentials)"},
        404: {"description": "Unknown provider, or none configured for the tenant"},
        503: {"description": "Cannot verify now (SNS certificate unavailable); retry later"},
        502: {"description": "SNS did not accept the subscription confirmation"},
    },
)
async def provider_notification(provider: str, tenant_id: str, request: Request, ctx: Ctx) -> Any:
    """A provider's notification: verified, correlated, recorded as bounces/suppressions."""
    _known(provider)
    async with ctx.pool.acquire() as conn:
        config = await db.get_config(conn, tenant_id=tenant_id, provider=provider)
    if config is None:
        raise HTTPException(404, f"no {provider} feedback configured for tenant '{tenant_id}'")
    now = int(time.time())
    try:
        events, confirmed, replay_key = await _verified_events(ctx, provider, config, request, now)
    except SignatureInvalid as exc:
        log.warning(
            "provider notification refused",
            extra={
                "action": "feedback_refused",
                "tenant_id": tenant_id,
                "provider": provider,
                "error": str(exc),
            },
        )
        raise HTTPException(401, str(exc)) from None
    except PayloadInvalid as exc:
        raise HTTPException(400, str(exc)) from None
    except VerificationBusy as exc:  # the provider retries later; nothing was recorded
        raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    except FeedbackError as exc:  # e.g. SNS did not take the confirmation: let it retry
        raise HTTPException(502, str(exc)) from None
    if not events:
        return NotificationAccepted(confirmed=confirmed or None)
    async with ctx.pool.acquire() as conn, conn.transaction():
        if replay_key is not None and not await db.first_use(
            conn, tenant_id=tenant_id, provider=provider, key=replay_key
        ):
            # A retry of a notification already applied, or a captured signature carrying
            # other events: nothing is applied either way, and a retry must not be refused.
            return NotificationAccepted(recorded=0, correlated=0, duplicates=len(events))
        applied = await db.apply_events(
            conn, tenant_id=tenant_id, provider=provider, events=events, policy=SuppressionPolicy()
        )
    for event in events:
        ctx.metrics.bounces.labels(tenant_id, event.bounce_type).inc()
    log.info(
        "provider feedback applied",
        extra={
            "action": "feedback_applied",
            "tenant_id": tenant_id,
            "provider": provider,
            "recorded": applied.recorded,
            "correlated": applied.correlated,
        },
    )
    return NotificationAccepted(
        recorded=applied.recorded, correlated=applied.correlated, duplicates=applied.duplicates
    )
