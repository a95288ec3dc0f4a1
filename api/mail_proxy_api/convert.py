# SPDX-License-Identifier: Apache-2.0
"""Database rows to HTTP shapes: timestamps as ISO strings, secrets masked, pks as strings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from mail_proxy.db.recipients import RecipientRow, needs_wire_list
from mail_proxy.db.tenants import parse_suspended
from mail_proxy.redact import redact, redact_url, url_may_hold_secret
from mail_proxy.states import MessageState
from mail_proxy_api.schemas.accounts import AccountInfo
from mail_proxy_api.schemas.instance import InstanceInfo
from mail_proxy_api.schemas.messages import MessageEvent, MessageRecord, RecipientOutcome
from mail_proxy_api.schemas.tenants import TenantInfo


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def shown_url(url: str | None) -> str | None:
    """A stored URL as shown: user info and query values masked (SPEC section 2)."""
    return redact_url(url) if url is not None and url_may_hold_secret(url) else url


def tenant_info(row: asyncpg.Record) -> TenantInfo:
    return TenantInfo(
        id=row["id"],
        name=row["name"],
        client_auth=redact(row["client_auth"]),
        client_base_url=shown_url(row["client_base_url"]),
        client_sync_path=row["client_sync_path"],
        client_attachment_path=row["client_attachment_path"],
        rate_limits=row["rate_limits"],
        large_file_config=redact(row["large_file_config"]),  # storage_url credentials
        bounce_config=redact(row["bounce_config"]),
        active=row["active"],
        suspended_batches=parse_suspended(row["suspended_batches"]),
        managed_by=row["managed_by"],
        created_at=iso(row["created_at"]),
        updated_at=iso(row["updated_at"]),
    )


def _pec_mailbox(row: asyncpg.Record) -> dict[str, Any]:
    """A PEC account's receipt mailbox (ours, beyond the reference's imap_host/imap_port)."""
    if not row["is_pec_account"]:
        return {}
    names = (
        *("imap_user", "imap_folder", "imap_ssl", "imap_starttls", "imap_processed_action"),
        *("imap_processed_folder", "imap_last_uid", "imap_last_sync"),
    )
    return {name: row[name] for name in names}


def account_info(row: asyncpg.Record) -> AccountInfo:
    return AccountInfo(
        id=row["id"],
        tenant_id=row["tenant_id"],
        host=row["host"],
        port=row["port"],
        user=row["username"],
        ttl=row["ttl"],
        limit_per_minute=row["limit_per_minute"],
        limit_per_hour=row["limit_per_hour"],
        limit_per_day=row["limit_per_day"],
        limit_behavior=row["limit_behavior"],
        use_tls=row["use_tls"],
        tls_verify=row["tls_verify"],
        batch_size=row["batch_size"],
        max_connections=row["max_connections"],
        created_at=iso(row["created_at"]),
        updated_at=iso(row["updated_at"]),
        is_pec_account=row["is_pec_account"],
        imap_host=row["imap_host"],
        imap_port=row["imap_port"],
        **_pec_mailbox(row),
        managed_by=row["managed_by"],
        health=row["health"],
        health_reason=row["health_reason"],
        health_checked_at=iso(row["health_checked_at"]),
    )


def instance_info(row: asyncpg.Record) -> InstanceInfo:
    fields = {
        key: row[key]
        for key in InstanceInfo.model_fields
        if key not in ("created_at", "updated_at")
    }
    return InstanceInfo(
        **fields, created_at=iso(row["created_at"]), updated_at=iso(row["updated_at"])
    )


def message_record(
    row: asyncpg.Record,
    history: list[dict[str, Any]] | None,
    recipients: list[RecipientRow] | None = None,
) -> MessageRecord:
    state = row["state"]
    return MessageRecord(
        pk=str(row["pk"]),
        id=row["id"],
        tenant_id=row["tenant_id"],
        tenant_name=row["tenant_name"],
        account_id=row["account_id"],
        priority=row["priority"],
        batch_code=row["batch_code"],
        deferred_ts=row["deferred_ts"],
        sent_ts=row["smtp_ts"],
        error_ts=row["error_ts"] if state == MessageState.ERROR else None,
        error=row["error"] if state == MessageState.ERROR else None,
        created_at=iso(row["created_at"]),
        updated_at=iso(row["updated_at"]),
        message=redact(row["payload"]),  # attachment `auth` may carry a token
        is_pec=row["is_pec"],
        status=state,
        attempts=row["attempts"],
        recipients=[RecipientOutcome(**r.wire()) for r in recipients]
        if recipients and needs_wire_list(recipients)
        else None,
        history=None if history is None else [MessageEvent(**event) for event in history],
    )
