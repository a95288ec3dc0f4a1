# SPDX-License-Identifier: Apache-2.0
"""Bodies and answers of the SMTP account routes; passwords go in, never out."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mail_proxy.hostnames import host_problem
from mail_proxy.ids import ACCOUNT_ID_PATTERN, TENANT_ID_PATTERN
from mail_proxy_api.schemas.bounce import HOST_PATTERN, folder_name
from mail_proxy_api.schemas.bounds import INT32_MAX


class AccountPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=ACCOUNT_ID_PATTERN)
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    user: str | None = None
    password: str | None = None
    ttl: int = Field(default=300, ge=0, le=INT32_MAX)
    limit_per_minute: int | None = Field(default=None, ge=0, le=INT32_MAX)
    limit_per_hour: int | None = Field(default=None, ge=0, le=INT32_MAX)
    limit_per_day: int | None = Field(default=None, ge=0, le=INT32_MAX)
    limit_behavior: Literal["defer", "reject"] = "defer"
    use_tls: bool | None = None
    tls_verify: bool = True
    batch_size: int | None = Field(default=None, ge=1, le=INT32_MAX)
    # SMTP connections to this account's server at a time, across every sender (default 20,
    # as Postfix's per-destination concurrency).
    max_connections: int = Field(default=20, ge=1, le=1000)
    is_pec_account: bool = False
    imap_host: str | None = Field(default=None, pattern=HOST_PATTERN)
    imap_port: int | None = Field(default=None, ge=1, le=65535)
    imap_user: str | None = None
    imap_password: str | None = None
    imap_folder: str | None = Field(default=None, min_length=1, max_length=200)
    imap_ssl: bool | None = None
    # Beyond the reference: STARTTLS when imap_ssl is false; what happens to read receipts.
    imap_starttls: bool | None = None
    imap_processed_action: Literal["keep", "seen", "move"] | None = None
    imap_processed_folder: str | None = Field(default=None, min_length=1, max_length=200)

    _folder = field_validator("imap_folder", "imap_processed_folder")(folder_name)

    @field_validator("host", "imap_host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and (problem := host_problem(value)):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _pec_mailbox(self) -> AccountPayload:
        if self.imap_processed_action == "move" and not self.imap_processed_folder:
            raise ValueError("imap_processed_action 'move' needs imap_processed_folder")
        return self


class AccountInfo(BaseModel):
    id: str
    tenant_id: str
    host: str
    port: int
    user: str | None = None
    ttl: int
    limit_per_minute: int | None = None
    limit_per_hour: int | None = None
    limit_per_day: int | None = None
    limit_behavior: str
    use_tls: bool | None = None
    tls_verify: bool = True
    batch_size: int | None = None
    max_connections: int = 20
    created_at: str | None = None
    updated_at: str | None = None
    is_pec_account: bool = False
    imap_host: str | None = None
    imap_port: int | None = None
    imap_user: str | None = None
    imap_folder: str | None = None
    imap_ssl: bool | None = None
    imap_starttls: bool | None = None
    imap_processed_action: str | None = None
    imap_processed_folder: str | None = None
    imap_last_uid: int | None = None
    imap_last_sync: int | None = None
    managed_by: str | None = None
    # Account health (SPEC section 13): "ok", or "unhealthy" with what to fix in
    # `health_reason`; absent until a sender has tried the account.
    health: str | None = None
    health_reason: str | None = None
    health_checked_at: str | None = None


class AccountsResponse(BaseModel):
    ok: bool = True
    accounts: list[AccountInfo]
