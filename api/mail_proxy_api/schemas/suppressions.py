# SPDX-License-Identifier: BUSL-1.1
"""Bodies and answers of the suppression-list routes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mail_proxy.addresses import address_of, has_crlf


def bare_address(value: str) -> str:
    """The bare address of `value` (display names allowed), or ValueError naming the problem."""
    if has_crlf(value):
        raise ValueError("line break in address")
    address = address_of(value)
    if address is None:
        raise ValueError(f"invalid address: {value!r}")
    return address.lower()


class SuppressionAdd(BaseModel):
    """`POST /suppressions`: put an address on a tenant's list by hand."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str | None = Field(default=None, min_length=1, max_length=64)
    address: str = Field(min_length=3, max_length=320)
    reason: str = Field(default="added manually", min_length=1, max_length=500)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return bare_address(value)

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if has_crlf(value):
            raise ValueError("line break in reason")
        return value


class SuppressionInfo(BaseModel):
    address: str
    tenant_id: str
    reason: str
    source: str  # hard_bounce | soft_bounces | manual | a provider name
    message_id: str | None = None  # client id of the message whose bounce put it here
    bounce_code: str | None = None
    created_at: str


class SuppressionsResponse(BaseModel):
    ok: bool = True
    suppressions: list[SuppressionInfo]
    next_cursor: str | None = None


class SuppressionAdded(BaseModel):
    ok: bool = True
    added: bool  # False: the address was already on the list (its entry is kept)
