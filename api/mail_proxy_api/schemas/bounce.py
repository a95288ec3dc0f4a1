# SPDX-License-Identifier: BUSL-1.1
"""A tenant's own bounce mailbox (beyond the reference): the instance's `bounce_*` settings
without the prefix, plus VERP and what to do with processed mail."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mail_proxy.addresses import address_of, has_crlf

HOST_PATTERN = r"^[A-Za-z0-9.:\[\]_-]{1,253}$"
ProcessedAction = Literal["keep", "seen", "move"]


def folder_name(value: str | None) -> str | None:
    """An IMAP folder name: no line breaks or NUL (it is sent quoted, RFC 3501 4.3)."""
    if value is not None and (has_crlf(value) or "\0" in value):
        raise ValueError("line break in folder name")
    return value


def bare_return_path(value: str | None) -> str | None:
    if value is None:
        return None
    address = address_of(value)
    if address is None or address != value.strip():
        raise ValueError(f"return_path must be a bare address: {value!r}")
    return address


class BounceMailbox(BaseModel):
    """`tenant.bounce_config`: where this tenant's DSNs go and how that mailbox is read."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    imap_host: str | None = Field(default=None, pattern=HOST_PATTERN)
    imap_port: int | None = Field(default=None, ge=1, le=65535)
    imap_user: str | None = Field(default=None, min_length=1, max_length=320)
    imap_password: str | None = Field(default=None, max_length=1024)
    imap_folder: str = Field(default="INBOX", min_length=1, max_length=200)
    imap_ssl: bool = True  # implicit TLS (IMAPS, 993)
    imap_starttls: bool = False  # when imap_ssl is false: STARTTLS on the plain port
    poll_interval: int = Field(default=60, ge=1, le=86_400)  # seconds
    return_path: str | None = Field(default=None, max_length=320)
    verp: bool = False  # envelope sender local+<token>@domain
    processed_action: ProcessedAction = "keep"
    processed_folder: str | None = Field(default=None, min_length=1, max_length=200)

    _folder = field_validator("imap_folder", "processed_folder")(folder_name)
    _return_path = field_validator("return_path")(bare_return_path)

    @model_validator(mode="after")
    def _complete(self) -> BounceMailbox:
        if self.enabled and not (self.imap_host and self.imap_user):
            raise ValueError("an enabled bounce mailbox needs imap_host and imap_user")
        if self.processed_action == "move" and not self.processed_folder:
            raise ValueError("processed_action 'move' needs processed_folder")
        if self.verp and not self.return_path:
            raise ValueError("verp needs return_path")
        return self
