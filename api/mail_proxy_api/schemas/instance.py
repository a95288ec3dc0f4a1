# SPDX-License-Identifier: Apache-2.0
"""Bodies and answers of the instance and command-log routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mail_proxy_api.schemas.bounds import INT32_MAX


class InstanceInfo(BaseModel):
    id: int = 1
    name: str
    bounce_enabled: bool
    bounce_imap_host: str | None = None
    bounce_imap_port: int
    bounce_imap_user: str | None = None
    bounce_imap_folder: str
    bounce_imap_ssl: bool
    bounce_poll_interval: int
    bounce_return_path: str | None = None
    bounce_last_uid: int | None = None
    bounce_last_sync: int | None = None
    bounce_uidvalidity: int | None = None
    managed_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class InstanceUpdate(BaseModel):
    """PUT /instance body: any subset; an unknown key is refused (422 naming it), never ignored."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1)
    api_token: str | None = Field(default=None, min_length=16)
    bounce_enabled: bool | None = None
    bounce_imap_host: str | None = None
    bounce_imap_port: int | None = Field(default=None, ge=1, le=65535)
    bounce_imap_user: str | None = None
    bounce_imap_password: str | None = None
    bounce_imap_folder: str | None = None
    bounce_imap_ssl: bool | None = None
    bounce_poll_interval: int | None = Field(default=None, ge=1, le=INT32_MAX)
    bounce_return_path: str | None = None


class CommandEntry(BaseModel):
    id: int
    command_ts: int
    endpoint: str
    tenant_id: str | None = None
    payload: Any
    response_status: int | None = None


class CommandLogResponse(BaseModel):
    ok: bool = True
    commands: list[CommandEntry]
    total: int


class ExportEntry(BaseModel):
    endpoint: str
    tenant_id: str | None = None
    payload: Any
    command_ts: int


class CommandExportResponse(BaseModel):
    ok: bool = True
    commands: list[ExportEntry]
