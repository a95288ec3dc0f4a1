# SPDX-License-Identifier: Apache-2.0
"""Bodies and answers of the instance and command-log routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mail_proxy_api.schemas.bounce import (
    HOST_PATTERN,
    ProcessedAction,
    bare_return_path,
    folder_name,
)
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
    bounce_imap_starttls: bool = False
    bounce_processed_action: str = "keep"
    bounce_processed_folder: str | None = None
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
    bounce_imap_host: str | None = Field(default=None, pattern=HOST_PATTERN)
    bounce_imap_port: int | None = Field(default=None, ge=1, le=65535)
    bounce_imap_user: str | None = Field(default=None, min_length=1, max_length=320)
    bounce_imap_password: str | None = Field(default=None, max_length=1024)
    bounce_imap_folder: str | None = Field(default=None, min_length=1, max_length=200)
    bounce_imap_ssl: bool | None = None
    bounce_poll_interval: int | None = Field(default=None, ge=1, le=INT32_MAX)
    bounce_return_path: str | None = Field(default=None, max_length=320)
    # Beyond the reference: STARTTLS when bounce_imap_ssl is false; processed mail kept,
    # flagged \\Seen, or moved to bounce_processed_folder.
    bounce_imap_starttls: bool | None = None
    bounce_processed_action: ProcessedAction | None = None
    bounce_processed_folder: str | None = Field(default=None, min_length=1, max_length=200)

    _folder = field_validator("bounce_imap_folder", "bounce_processed_folder")(folder_name)
    _return_path = field_validator("bounce_return_path")(bare_return_path)


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
