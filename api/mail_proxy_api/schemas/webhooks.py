# SPDX-License-Identifier: Apache-2.0
"""Bodies and answers of `/webhooks` (signed per-event webhooks, SPEC section 13)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import httpx
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from mail_proxy.event_types import WEBHOOK_EVENT_TYPES, unknown_event_type


def _known_event_type(value: str) -> str:
    """One of the event types the service emits (`mail_proxy.event_types`): an unknown name would
    be stored and then never fire, so it is refused (422) naming it and listing the valid ones."""
    problem = unknown_event_type(value)
    if problem is not None:
        raise ValueError(problem)
    return value


EventType = Annotated[str, StringConstraints(max_length=64), AfterValidator(_known_event_type)]
WebhookId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


def _check_url(value: str) -> str:
    """An absolute http(s) URL with a host and no credentials (the secret signs instead)."""
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise ValueError("the URL contains whitespace or control characters")
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an absolute http:// or https:// URL")
    if url.port is not None and not 0 < url.port < 65536:
        raise ValueError("the port must be between 1 and 65535")
    if url.userinfo:
        raise ValueError("must not carry credentials; requests are signed")
    return value


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: WebhookId | None = Field(default=None, description="Generated when omitted")
    tenant_id: str | None = Field(default=None, description="A tenant token's own by default")
    url: str = Field(max_length=2048)
    event_types: list[EventType] | None = Field(
        default=None,
        min_length=1,  # an empty list would never fire: null means every event
        max_length=64,
        description="Event types to send, among: "
        + ", ".join(WEBHOOK_EVENT_TYPES)
        + ". `pec_*` is every PEC event; omitted or null: every message event. Per-recipient "
        "outcomes (recipient_*) are sent only when named here",
    )
    active: bool = True

    _url = field_validator("url")(_check_url)


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2048)
    event_types: list[EventType] | None = Field(default=None, min_length=1, max_length=64)
    active: bool | None = Field(default=None, description="true also clears the failure count")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)


class RotateSecretBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_seconds: int | None = Field(
        default=None,
        ge=0,
        le=30 * 86_400,
        description="How long the old secret keeps signing beside the new one "
        "(default GMP_WEBHOOK_SECRET_OVERLAP_SECONDS, 24 h)",
    )


class WebhookInfo(BaseModel):
    """An endpoint and its failure state; its secret is never shown again."""

    id: str
    tenant_id: str
    url: str
    event_types: list[str] | None
    active: bool
    consecutive_failures: int
    last_success_at: dt.datetime | None
    last_failure_at: dt.datetime | None
    last_error: str | None
    pending_deliveries: int
    failed_deliveries: int
    previous_secret_until: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class WebhookCreated(WebhookInfo):
    secret: str = Field(description="whsec_...: shown once; verify signatures with it")


class WebhookSecret(BaseModel):
    id: str
    secret: str = Field(description="The new whsec_... secret, shown once")
    previous_secret_until: dt.datetime | None


class WebhooksResponse(BaseModel):
    webhooks: list[WebhookInfo]


class RetryResponse(BaseModel):
    requeued: int
