# SPDX-License-Identifier: BUSL-1.1
"""Bodies and answers of the tenant routes; `client_auth` secrets are masked on the way out."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mail_proxy.ids import TENANT_ID_PATTERN
from mail_proxy.large_files.policy import MAX_DAYS, STORAGE_SCHEMES
from mail_proxy_api.schemas.bounce import BounceMailbox
from mail_proxy_api.schemas.bounds import INT32_MAX, INT64_MAX


class ClientAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["none", "bearer", "basic"] = "none"
    token: str | None = Field(default=None, max_length=4096)
    user: str | None = Field(default=None, max_length=255)
    password: str | None = Field(default=None, max_length=4096)

    @model_validator(mode="after")
    def _complete(self) -> ClientAuth:
        if self.method == "bearer" and not self.token:
            raise ValueError("bearer auth needs a token")
        if self.method == "basic" and not (self.user and self.password):
            raise ValueError("basic auth needs a user and a password")
        return self


class LargeFileConfig(BaseModel):
    """`large_file_config` (reference section 6.6): v0.6 field names and defaults. Admin-only.

    Stored as given (defaults are applied when it is used), so a v0.6 client reads back what
    it wrote.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    max_size_mb: float = Field(default=10.0, ge=0, le=1_048_576, allow_inf_nan=False)
    storage_url: str | None = Field(default=None, min_length=1, max_length=2048)
    public_base_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://\S+$")
    file_ttl_days: int = Field(default=30, ge=1, le=MAX_DAYS)
    lifespan_after_download_days: int | None = Field(default=None, ge=1, le=MAX_DAYS)
    action: Literal["warn", "reject", "rewrite"] = "warn"

    @field_validator("storage_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.lower() not in STORAGE_SCHEMES or not rest.strip("/"):
            raise ValueError(
                "storage_url must be <scheme>://<location> with scheme one of "
                + ", ".join(STORAGE_SCHEMES)
            )
        if any(ord(c) < 32 for c in value):
            raise ValueError("storage_url must not contain control characters")
        return value

    @model_validator(mode="after")
    def _rewrite_needs_storage(self) -> LargeFileConfig:
        if self.enabled and self.action == "rewrite" and not self.storage_url:
            raise ValueError("action 'rewrite' needs a storage_url to upload to")
        return self


URL_MAX = 2048


class RateLimits(BaseModel):
    """A tenant's own sending limits across its accounts (reference section 4): messages per
    hour and per day; 0 or absent = unlimited. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    hourly: int | None = Field(default=None, ge=0, le=INT32_MAX)
    daily: int | None = Field(default=None, ge=0, le=INT32_MAX)


class TenantPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=TENANT_ID_PATTERN)
    name: str | None = Field(default=None, max_length=255)
    client_auth: ClientAuth | None = None
    client_base_url: str | None = Field(default=None, pattern=r"^https?://\S+$", max_length=URL_MAX)
    client_sync_path: str | None = Field(default=None, max_length=URL_MAX)
    client_attachment_path: str | None = Field(default=None, max_length=URL_MAX)
    rate_limits: RateLimits | None = None
    large_file_config: LargeFileConfig | None = None
    bounce_config: BounceMailbox | None = None
    active: bool = True


class TenantUpdate(BaseModel):
    """PUT body: any subset; nulls leave the field as it is (reference behaviour)."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, max_length=255)
    client_auth: ClientAuth | None = None
    client_base_url: str | None = Field(default=None, pattern=r"^https?://\S+$", max_length=URL_MAX)
    client_sync_path: str | None = Field(default=None, max_length=URL_MAX)
    client_attachment_path: str | None = Field(default=None, max_length=URL_MAX)
    rate_limits: RateLimits | None = None
    large_file_config: LargeFileConfig | None = None
    bounce_config: BounceMailbox | None = None
    active: bool | None = None


class TenantInfo(BaseModel):
    id: str
    name: str | None = None
    client_auth: dict[str, Any] | None = None
    client_base_url: str | None = None
    client_sync_path: str | None = None
    client_attachment_path: str | None = None
    rate_limits: dict[str, Any] | None = None
    large_file_config: dict[str, Any] | None = None
    bounce_config: dict[str, Any] | None = None  # imap_password masked
    active: bool
    suspended_batches: list[str] = Field(default_factory=list)
    managed_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class TenantsResponse(BaseModel):
    ok: bool = True
    tenants: list[TenantInfo]


class TenantCreated(BaseModel):
    ok: bool = True
    api_key: str | None = None


class ApiKeyBody(BaseModel):
    expires_at: int | None = Field(default=None, ge=0, le=INT64_MAX)


class ApiKeyResponse(BaseModel):
    ok: bool = True
    api_key: str


class SyncStatusTenant(BaseModel):
    id: str
    name: str | None = None
    active: bool
    client_base_url: str | None = None
    last_sync_ts: float | None = None
    next_sync_due: bool
    in_dnd: bool
    consecutive_failures: int = 0
    retry_at: int | None = None
    last_error: str | None = None


class SyncStatusResponse(BaseModel):
    ok: bool = True
    sync_interval_seconds: int
    tenants: list[SyncStatusTenant]
