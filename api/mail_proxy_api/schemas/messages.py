# SPDX-License-Identifier: Apache-2.0
"""Bodies and answers of the message routes (reference section 1.4)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from mail_proxy_api.schemas.bounds import INT32_MAX, INT64_MAX

Priority = int | Literal["immediate", "high", "medium", "low"] | str


class AttachmentAuth(BaseModel):
    """Per-attachment HTTP auth override (reference section 6): the `client_auth` shape. Unknown
    keys are refused: every secret it holds is stored encrypted and masked wherever shown."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["none", "bearer", "basic"] = "none"
    token: str | None = Field(default=None, max_length=4096)
    user: str | None = Field(default=None, max_length=255)
    password: str | None = Field(default=None, max_length=4096)


class AttachmentPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=255)
    storage_path: str = Field(min_length=1)
    fetch_mode: Literal["endpoint", "http_url", "base64", "filesystem"] | None = None
    mime_type: str | None = Field(default=None, pattern=r"^[\w.+-]+/[\w.+-]+$")
    content_md5: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{32}$")
    auth: AttachmentAuth | None = None


class MessagePayload(BaseModel):
    """One message; unknown keys are dropped, as the reference does."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str
    tenant_id: str
    account_id: str
    from_: str = Field(alias="from")
    to: list[str] | str
    cc: list[str] | str | None = None
    bcc: list[str] | str | None = None
    # An address list (RFC 5322 3.6.2): a list, or a comma-separated string like `to`.
    reply_to: list[str] | str | None = None
    return_path: str | None = None
    subject: str
    body: str = ""
    content_type: str = "plain"
    # Plain-text alternative to an HTML `body`: with `content_type: "html"` the message goes
    # as multipart/alternative (text first, then HTML). Ignored for plain bodies.
    text_body: str | None = None
    headers: dict[str, Any] | None = None
    message_id: str | None = None
    attachments: list[AttachmentPayload] | None = None
    priority: int | str | None = None
    deferred_ts: int | None = Field(default=None, ge=0, le=INT64_MAX)
    batch_code: str | None = Field(default=None, max_length=64)

    @model_validator(mode="before")
    @classmethod
    def _accept_from_addr(cls, data: Any) -> Any:
        # `from_addr` is accepted too (reference behaviour).
        if isinstance(data, dict) and "from" not in data and "from_addr" in data:
            return {**data, "from": data["from_addr"]}
        return data


class AddMessagesBody(BaseModel):
    messages: list[MessagePayload]
    default_priority: int | str | None = None


class Rejection(BaseModel):
    id: str | None
    reason: str


class AddMessagesResponse(BaseModel):
    ok: bool
    queued: int
    rejected: list[Rejection]


class DeleteMessagesBody(BaseModel):
    ids: list[str] = Field(default_factory=list)


class DeleteMessagesResponse(BaseModel):
    ok: bool = True
    removed: int
    not_found: list[str]
    unauthorized: list[str]


class CleanupMessagesBody(BaseModel):
    # The cut-off is now minus this, stored as epoch seconds: bounded so it stays a timestamp.
    older_than_seconds: int | None = Field(default=None, ge=0, le=INT32_MAX)


class CleanupMessagesResponse(BaseModel):
    ok: bool = True
    removed: int


class MessageEvent(BaseModel):
    event_id: int
    event_type: str
    event_ts: int
    description: str | None = None
    metadata: dict[str, Any] | None = None
    reported_ts: int | None = None


class RecipientOutcome(BaseModel):
    """The fate of one recipient (SPEC section 13), made from `RecipientRow.wire()`: the item
    the delivery report carries."""

    address: str = Field(description="The recipient as the app submitted it")
    status: Literal["accepted", "refused", "deferred"]
    code: int | None = Field(description="The server's SMTP reply code for it, null if none")
    reason: str | None = Field(description="The server's answer, or why it was not sent")


class MessageRecord(BaseModel):
    pk: str
    id: str
    tenant_id: str
    tenant_name: str | None = None
    account_id: str | None = None
    priority: int
    batch_code: str | None = None
    deferred_ts: int | None = None
    sent_ts: int | None = None
    error_ts: int | None = None
    error: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    message: dict[str, Any]
    is_pec: bool = False
    status: str
    attempts: int = 0
    # Present when some recipient was refused or is deferred (SPEC section 13).
    recipients: list[RecipientOutcome] | None = None
    history: list[MessageEvent] | None = None

    @field_serializer("recipients")
    def _recipients(self, value: list[RecipientOutcome] | None) -> list[dict[str, Any]] | None:
        # Every key of every item, nulls included, as in the delivery report: the route leaves
        # out null fields of the record, never of a recipient (plain dicts are kept whole).
        return None if value is None else [dict(item) for item in value]


class MessagesResponse(BaseModel):
    ok: bool = True
    messages: list[MessageRecord]
    next_cursor: str | None = None


class SuspendResponse(BaseModel):
    ok: bool = True
    tenant_id: str
    batch_code: str | None = None
    suspended_batches: list[str]
    pending_messages: int


class HistoryEvent(BaseModel):
    event_id: int | None = Field(description="null for `queued`, which is the row's arrival")
    event_type: str
    event_ts: int = Field(description="Unix epoch seconds")
    description: str | None
    metadata: dict[str, Any] | None
    reported_ts: int | None = Field(description="When the sync protocol delivered it")


class MessageEventsResponse(BaseModel):
    id: str
    tenant_id: str
    state: str
    events: list[HistoryEvent]
    recipients: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Each recipient's latest outcome (address, status accepted/refused/"
        "deferred, code, reason) when some recipient did not accept at once",
    )
