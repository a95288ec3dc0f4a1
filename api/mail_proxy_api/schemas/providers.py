# SPDX-License-Identifier: BUSL-1.1
"""Bodies and answers of the provider-feedback routes (SES, SendGrid, Mailgun, Postmark)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from mail_proxy.feedback.sendgrid import load_public_key

TopicArn = Annotated[
    str, StringConstraints(pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}$")
]
Secret = Annotated[str, StringConstraints(min_length=8, max_length=512)]


class SesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic_arns: list[TopicArn] = Field(
        min_length=1,
        max_length=50,
        description="SNS topics whose notifications are accepted (anyone can sign SNS "
        "messages from a topic of their own, so this list is required)",
    )


class SendgridSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public_key: str = Field(
        max_length=4096, description="The Event Webhook verification key (base64 DER or PEM)"
    )

    @field_validator("public_key")
    @classmethod
    def _key(cls, value: str) -> str:
        load_public_key(value)  # ValueError -> 422 naming the problem
        return value


class MailgunSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signing_key: Secret = Field(description="The HTTP webhook signing key (stored encrypted)")


class PostmarkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    password: Secret | None = None
    token: Secret | None = Field(default=None, description="Sent by Postmark as X-Webhook-Token")

    @model_validator(mode="after")
    def _some_credential(self) -> PostmarkSettings:
        if not self.token and not (self.user and self.password):
            raise ValueError("give user and password (basic auth), or token, or both")
        if ":" in (self.user or ""):
            raise ValueError("user may not contain ':'")
        return self


SETTINGS_MODELS: dict[str, type[BaseModel]] = {
    "ses": SesSettings,
    "sendgrid": SendgridSettings,
    "mailgun": MailgunSettings,
    "postmark": PostmarkSettings,
}


class ProviderInfo(BaseModel):
    provider: str
    tenant_id: str
    settings: dict[str, Any] = Field(description="Secrets masked")
    notification_path: str = Field(description="Where the provider must POST its notifications")
    updated_at: dt.datetime


class ProvidersResponse(BaseModel):
    providers: list[ProviderInfo]


class NotificationAccepted(BaseModel):
    ok: bool = True
    recorded: int = Field(0, description="Bounces and complaints applied")
    correlated: int = Field(0, description="Of those, tied to a stored message")
    duplicates: int = Field(0, description="Seen before (provider retries), skipped")
    confirmed: bool | None = Field(None, description="An SNS subscription was confirmed")
