# SPDX-License-Identifier: Apache-2.0
"""Typed shapes of what the client sends and receives (pydantic models).

They follow mail-proxy's v0.6 wire contract (`POST /commands/add-messages`, the sync protocol's
delivery report items) plus the optional additions of the contract's §13 (`text_body`,
per-recipient outcomes). Unknown fields in answers are kept (`extra="allow"`), so a newer server
never breaks an older client.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Attachment(BaseModel):
    """An attachment: `storage_path` is a URL, base64 data, a path or an endpoint key."""

    model_config = ConfigDict(extra="allow")

    filename: str
    storage_path: str
    fetch_mode: Literal["endpoint", "http_url", "base64", "filesystem"] | None = None
    mime_type: str | None = None
    content_md5: str | None = None


class Message(BaseModel):
    """One message to queue. `body` is HTML when `content_type` is "html"; `text_body` then adds
    the plain-text alternative (sent as multipart/alternative)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    tenant_id: str | None = None
    account_id: str
    from_: str = Field(alias="from")
    to: list[str]
    cc: list[str] | None = None
    bcc: list[str] | None = None
    reply_to: str | list[str] | None = None
    return_path: str | None = None
    subject: str
    body: str = ""
    content_type: Literal["plain", "html"] = "plain"
    text_body: str | None = None
    headers: dict[str, str] | None = None
    message_id: str | None = None
    attachments: list[Attachment] | None = None
    priority: int | Literal["immediate", "high", "medium", "low"] | None = None
    deferred_ts: int | None = None
    batch_code: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class Rejection(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None
    reason: str


class AddMessagesResult(BaseModel):
    """How many messages were queued, and each refused one with its reason."""

    model_config = ConfigDict(extra="allow")

    ok: bool
    queued: int
    rejected: list[Rejection] = Field(default_factory=list)


class RecipientOutcome(BaseModel):
    model_config = ConfigDict(extra="allow")

    address: str
    status: Literal["accepted", "refused", "deferred"]
    code: int | None = None
    reason: str | None = None


ReportKind = Literal["sent", "error", "deferred", "bounce", "pec"]


class ReportItem(BaseModel):
    """One item of a delivery report (sync protocol). `kind` is derived from which timestamp the
    item carries (reference §5.6: `sent_ts`, `error_ts`, `deferred_ts`, `bounce_ts`, `pec_event`);
    the same message may be reported more than once, so handle items idempotently."""

    model_config = ConfigDict(extra="allow")

    id: str
    sent_ts: int | float | None = None
    error_ts: int | float | None = None
    error: str | None = None
    deferred_ts: int | float | None = None
    deferred_reason: str | None = None
    bounce_ts: int | float | None = None
    bounce_type: str | None = None
    bounce_code: str | None = None
    bounce_reason: str | None = None
    pec_event: str | None = None
    pec_ts: int | float | None = None
    pec_details: str | None = None
    recipients: list[RecipientOutcome] | None = None

    @property
    def kind(self) -> ReportKind:
        if self.pec_event is not None:
            return "pec"
        if self.bounce_ts is not None:
            return "bounce"
        if self.error_ts is not None:
            return "error"
        if self.deferred_ts is not None:
            return "deferred"
        return "sent"

    @property
    def timestamp(self) -> float | None:
        for value in (self.pec_ts, self.bounce_ts, self.error_ts, self.deferred_ts, self.sent_ts):
            if value is not None:
                return float(value)
        return None

    @property
    def reason(self) -> str | None:
        return self.error or self.deferred_reason or self.bounce_reason or self.pec_details


class ReportAnswer(BaseModel):
    """What the app answers to a delivery report: how many messages it still has queued on its
    side (`queued` > 0 makes mail-proxy call again at once) and an optional quiet period."""

    ok: bool = True
    queued: int = 0
    next_sync_after: float | None = None
    error: list[str] = Field(default_factory=list)
    not_found: list[str] = Field(default_factory=list)
