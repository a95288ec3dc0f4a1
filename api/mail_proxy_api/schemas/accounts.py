# SPDX-License-Identifier: Apache-2.0
"""Bodies and answers of the SMTP account routes; passwords go in, never out."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mail_proxy_api.schemas.bounds import INT32_MAX


class AccountPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=128)
    tenant_id: str = Field(min_length=1)
    host: str = Field(min_length=1, pattern=r"^[^\s\r\n]+$")
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
    imap_host: str | None = None
    imap_port: int | None = Field(default=None, ge=1, le=65535)
    imap_user: str | None = None
    imap_password: str | None = None
    imap_folder: str | None = None
    imap_ssl: bool | None = None


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
    managed_by: str | None = None


class AccountsResponse(BaseModel):
    ok: bool = True
    accounts: list[AccountInfo]
