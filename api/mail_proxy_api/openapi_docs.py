# SPDX-License-Identifier: Apache-2.0
"""The API reference: a summary, a description and examples for every operation.

Kept in one table keyed by `"METHOD /path"` so the reference reads as one document and a route
module stays about behaviour. `document_operations` copies each entry onto its route before the
OpenAPI document is served (summary, description, request example, 200 example); a route's own
examples win, its docstring (written for developers) and FastAPI's summary made from the function
name give way to the entry's. `tests/unit/api/test_openapi_docs.py`
fails for any operation left without them, and for examples its own schemas would refuse, so a
new route gets its reference entry with it. Error statuses come from
`openapi_errors.OPERATION_ERRORS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from mail_proxy_api.openapi_errors import apply_errors

TOKEN = "Send the admin token or a tenant API key in the `X-API-Token` header."
TENANT_SCOPE = (
    "A tenant key acts on its own tenant only (`tenant_id` may be omitted); the admin token "
    "names the tenant with `tenant_id`."
)
ADMIN_ONLY = "Admin token only (403 for a tenant key)."
_MESSAGE = {
    "id": "invoice-2026-0042",
    "tenant_id": "acme",
    "account_id": "smtp1",
    "from": "ACME Billing <billing@acme.example>",
    "to": ["customer@example.org"],
    "subject": "Your invoice",
    "body": "<p>Your invoice is attached.</p>",
    "content_type": "html",
    "text_body": "Your invoice is attached.",
    "attachments": [
        {"filename": "invoice.pdf", "storage_path": "https://app.acme.example/files/42.pdf"}
    ],
    "priority": "high",
    "batch_code": "invoices-2026-11",
}
_TENANT = {
    "id": "acme",
    "name": "ACME",
    "client_base_url": "https://app.acme.example",
    "client_sync_path": "/mail-proxy/sync",
    "client_auth": {"method": "bearer", "token": "********"},
    "rate_limits": {"hourly": 1000, "daily": 10000},
    "active": True,
}
_ACCOUNT = {
    "id": "smtp1",
    "tenant_id": "acme",
    "host": "smtp.acme.example",
    "port": 587,
    "user": "mailer",
    "use_tls": True,
    "limit_per_minute": 60,
    "limit_behavior": "defer",
}
_WEBHOOK = {
    "id": "wh1",
    "tenant_id": "acme",
    "url": "https://app.acme.example/hooks/mail",
    "event_types": ["sent", "error", "bounce"],
    "active": True,
    "consecutive_failures": 0,
    "last_success_at": "2026-11-29T10:05:00+00:00",
    "last_failure_at": None,
    "last_error": None,
    "pending_deliveries": 0,
    "failed_deliveries": 0,
    "previous_secret_until": None,
    "created_at": "2026-11-29T10:00:00+00:00",
    "updated_at": "2026-11-29T10:00:00+00:00",
}
_OK = {"ok": True}


@dataclass(frozen=True)
class OperationDoc:
    summary: str
    description: str
    request: Any = None  # example request body (JSON), for operations that take one
    response: Any = None  # example 200 body
    media_type: str = "application/json"  # of the 200 response


OPERATIONS: dict[str, OperationDoc] = {
    "GET /health": OperationDoc(
        "Liveness",
        "Answers while the process runs; touches no database (a Kubernetes liveness probe). "
        "No token needed.",
        response={"status": "ok"},
    ),
    "GET /ready": OperationDoc(
        "Readiness",
        "200 when the database answers and its schema is the one this version expects; 503 "
        "with a reason and `Retry-After` otherwise (a readiness probe). No token needed.",
        response={"status": "ready"},
    ),
    "GET /status": OperationDoc(
        "Service status",
        f"Whether the service runs, its uptime and the unsent messages (of the caller's tenant "
        f"for a tenant key). {TOKEN}",
        response={
            "ok": True,
            "active": True,
            "scheduler_active": True,
            "pending_messages": 12,
            "uptime_seconds": 3600,
        },
    ),
    "GET /metrics": OperationDoc(
        "Prometheus metrics",
        "Counters, gauges and histograms in the Prometheus text format (`gmp_sent_total`, "
        "`gmp_pending_messages`, ...). No token unless `GMP_METRICS_TOKEN` is set (bearer).",
        response="# TYPE gmp_sent_total counter\n"
        'gmp_sent_total{account_id="smtp1",tenant_id="acme"} 42.0\n',
        media_type="text/plain",
    ),
    "POST /commands/add-messages": OperationDoc(
        "Queue messages",
        "Queue up to 1000 messages. Each is validated alone: refused ones are listed in "
        "`rejected` with the reason (and reported as errors through the sync protocol), the "
        "others are stored and `queued` counts them. Resubmitting an unsent id replaces it; an "
        "id already attempted is rejected with `already sent`. `content_type: html` with "
        "`text_body` sends multipart/alternative. An `Idempotency-Key` header makes a retried "
        f"request answer as the first one did (24 h). {TOKEN}",
        request={"messages": [_MESSAGE], "default_priority": "medium"},
        response={
            "ok": True,
            "queued": 1,
            "rejected": [{"id": "bad-1", "reason": "invalid address: 'x@'"}],
        },
    ),
    "POST /commands/delete-messages": OperationDoc(
        "Delete messages",
        f"Delete messages by client id, sent or not. {TENANT_SCOPE} {TOKEN}",
        request={"ids": ["invoice-2026-0042", "unknown-id"]},
        response={"ok": True, "removed": 1, "not_found": ["unknown-id"], "unauthorized": []},
    ),
    "POST /commands/cleanup-messages": OperationDoc(
        "Purge reported messages",
        "Delete messages whose delivery report was acknowledged more than `older_than_seconds` "
        f"ago (default: the retention setting). {TENANT_SCOPE} {TOKEN}",
        request={"older_than_seconds": 86400},
        response={"ok": True, "removed": 250},
    ),
    "POST /commands/suspend": OperationDoc(
        "Suspend sending",
        "Hold a tenant's sending, or only one `batch_code`; messages stay queued. "
        f"{TENANT_SCOPE} {TOKEN}",
        response={
            "ok": True,
            "tenant_id": "acme",
            "batch_code": "invoices-2026-11",
            "suspended_batches": ["invoices-2026-11"],
            "pending_messages": 40,
        },
    ),
    "POST /commands/activate": OperationDoc(
        "Resume sending",
        "Resume a suspended tenant, or one suspended batch (a single batch cannot be resumed "
        f"while the whole tenant is suspended). {TENANT_SCOPE} {TOKEN}",
        response={
            "ok": True,
            "tenant_id": "acme",
            "batch_code": None,
            "suspended_batches": [],
            "pending_messages": 40,
        },
    ),
    "POST /commands/run-now": OperationDoc(
        "Send and report now",
        "Wake every sender and reporter process at once (Postgres NOTIFY), and send the "
        f"tenant's delivery report without waiting for the next interval. {TOKEN}",
        response={"ok": True},
    ),
    "GET /messages": OperationDoc(
        "List messages",
        "A tenant's messages, newest first, `limit` per page (default 1000) with `next_cursor` "
        "for the next page; `status` filters (pending, deferred, sending, sent, error), "
        f"`include_history` adds each message's events. {TENANT_SCOPE} {TOKEN}",
        response={
            "ok": True,
            "messages": [
                {
                    "pk": "0f3c2a9e-6d1b-4d47-9f34-8f1d2b7c5e10",
                    "id": "invoice-2026-0042",
                    "tenant_id": "acme",
                    "account_id": "smtp1",
                    "priority": 1,
                    "batch_code": "invoices-2026-11",
                    "sent_ts": 1795990000,
                    "message": {"subject": "Your invoice", "to": ["customer@example.org"]},
                    "status": "sent",
                    "attempts": 1,
                }
            ],
            "next_cursor": None,
        },
    ),
    "GET /messages/{message_id}/events": OperationDoc(
        "Message history",
        "Every event of one message, oldest first (queued, deferred, sent, error, bounce, "
        f"pec_*), with its state now. {TENANT_SCOPE} {TOKEN}",
        response={
            "id": "invoice-2026-0042",
            "tenant_id": "acme",
            "state": "sent",
            "events": [
                {
                    "event_id": 1,
                    "event_type": "queued",
                    "event_ts": 1795989990,
                    "description": None,
                    "metadata": None,
                    "reported_ts": None,
                },
                {
                    "event_id": 2,
                    "event_type": "sent",
                    "event_ts": 1795990000,
                    "description": "250 2.0.0 queued as 4XyZ",
                    "metadata": None,
                    "reported_ts": 1795990300,
                },
            ],
        },
    ),
    "POST /account": OperationDoc(
        "Add or replace an SMTP account",
        "An SMTP account of a tenant: host, port, credentials (stored encrypted, never shown "
        "again), TLS mode (`use_tls`: null = by port, implicit on 465, opportunistic STARTTLS "
        "elsewhere), rate limits per minute/hour/day and what to do beyond them "
        f"(`limit_behavior`). {TOKEN}",
        request={**_ACCOUNT, "password": "smtp-password"},
        response=_OK,
    ),
    "GET /accounts": OperationDoc(
        "List SMTP accounts",
        f"A tenant's SMTP accounts, passwords left out. {TENANT_SCOPE} {TOKEN}",
        response={"ok": True, "accounts": [{**_ACCOUNT, "ttl": 300, "tls_verify": True}]},
    ),
    "DELETE /account/{account_id}": OperationDoc(
        "Delete an SMTP account",
        "Delete an account of the tenant (refused with 409 for an account managed by a "
        f"Kubernetes SmtpAccount). {TENANT_SCOPE} {TOKEN}",
        response=_OK,
    ),
    "POST /tenant": OperationDoc(
        "Create or replace a tenant",
        "A tenant is an app that sends mail: where its delivery reports go "
        "(`client_base_url` + `client_sync_path`, authenticated by `client_auth`) and its "
        "limits. A new tenant's API key is in the answer, shown only this once. "
        f"{ADMIN_ONLY}",
        request={**_TENANT, "client_auth": {"method": "bearer", "token": "app-sync-secret"}},
        response={"ok": True, "api_key": "jNeWEMKYhgfhQ6y48Y6WB-awDRUHYiNOcMshuwA0S54"},
    ),
    "GET /tenants": OperationDoc(
        "List tenants",
        f"Every tenant (secrets masked). {ADMIN_ONLY}",
        response={"ok": True, "tenants": [{**_TENANT, "suspended_batches": []}]},
    ),
    "GET /tenants/sync-status": OperationDoc(
        "Delivery-report status per tenant",
        "For each tenant: last successful report, failures in a row, when the next attempt is "
        f"due and any do-not-disturb window the app asked for. {ADMIN_ONLY}",
        response={"ok": True, "sync_interval_seconds": 300, "tenants": []},
    ),
    "GET /tenant/{tenant_id}": OperationDoc(
        "Show a tenant",
        f"One tenant, secrets masked. A tenant key may read only its own. {TOKEN}",
        response={**_TENANT, "suspended_batches": [], "created_at": "2026-11-29T10:00:00"},
    ),
    "PUT /tenant/{tenant_id}": OperationDoc(
        "Update a tenant",
        "Change the given fields only. A tenant key may change what the tenant owns (name, "
        "URLs, client_auth); `active`, `rate_limits` and `large_file_config` are admin-only. "
        f"A masked secret (`********`) keeps the stored one. {TOKEN}",
        request={"client_base_url": "https://app.acme.example", "name": "ACME Ltd"},
        response=_OK,
    ),
    "DELETE /tenant/{tenant_id}": OperationDoc(
        "Delete a tenant",
        f"Delete a tenant with its accounts, messages and keys. {ADMIN_ONLY}",
        response=_OK,
    ),
    "POST /tenant/{tenant_id}/api-key": OperationDoc(
        "Issue a tenant API key",
        "A new key replaces the old one at once; `expires_at` (epoch seconds, in the future) "
        f"is optional. The key is shown only in this answer. {ADMIN_ONLY}",
        request={"expires_at": 1830000000},
        response={"ok": True, "api_key": "Vt1mA8qQ0yq7sG3c1x9GzvJm3m2cY7o0L3bKp9n8uQw"},
    ),
    "DELETE /tenant/{tenant_id}/api-key": OperationDoc(
        "Revoke a tenant's API key",
        f"The tenant's key stops working at once. {ADMIN_ONLY}",
        response=_OK,
    ),
    "GET /instance": OperationDoc(
        "Instance settings",
        f"The instance's name and bounce mailbox settings (password left out). {ADMIN_ONLY}",
        response={
            "id": 1,
            "name": "mail-proxy",
            "bounce_enabled": True,
            "bounce_imap_host": "imap.acme.example",
            "bounce_imap_port": 993,
            "bounce_imap_user": "bounces@acme.example",
            "bounce_imap_folder": "INBOX",
            "bounce_imap_ssl": True,
            "bounce_poll_interval": 60,
            "bounce_return_path": "bounces@acme.example",
        },
    ),
    "PUT /instance": OperationDoc(
        "Update instance settings",
        "Change the given settings; unknown keys are refused. `api_token` replaces the admin "
        f"token (only its hash is stored). {ADMIN_ONLY}",
        request={"name": "mail-proxy-eu", "bounce_enabled": False},
        response=_OK,
    ),
    "POST /instance/reload-bounce": OperationDoc(
        "Reload the bounce poller",
        "Ask the bounce poller, in whichever process holds it, to re-read its mailbox "
        f"settings now. {ADMIN_ONLY}",
        response=_OK,
    ),
    "GET /command-log": OperationDoc(
        "Command log",
        "The API calls that changed something, newest first, secrets masked; filter by tenant, "
        f"time range (epoch seconds) and endpoint. {TENANT_SCOPE} {TOKEN}",
        response={
            "ok": True,
            "commands": [
                {
                    "id": 7,
                    "command_ts": 1795990000,
                    "endpoint": "addMessages",
                    "tenant_id": "acme",
                    "payload": {"messages": [{"id": "invoice-2026-0042"}]},
                    "response_status": 200,
                }
            ],
            "total": 1,
        },
    ),
    "GET /command-log/export": OperationDoc(
        "Export the command log",
        "The command log oldest first, in a form that can be replayed against another "
        f"instance. {TENANT_SCOPE} {TOKEN}",
        response={
            "ok": True,
            "commands": [
                {
                    "endpoint": "addMessages",
                    "tenant_id": "acme",
                    "payload": {"messages": [{"id": "invoice-2026-0042"}]},
                    "command_ts": 1795990000,
                }
            ],
        },
    ),
    "GET /suppressions": OperationDoc(
        "List suppressed addresses",
        "A tenant's suppression list (hard bounces and manual entries): later messages to "
        "these addresses are refused with `recipient suppressed`. Paginated with `cursor`; "
        f"`contains` filters. {TENANT_SCOPE} {TOKEN}",
        response={
            "ok": True,
            "suppressions": [
                {
                    "tenant_id": "acme",
                    "address": "gone@example.org",
                    "reason": "hard bounce: 550 5.1.1 user unknown",
                    "source": "bounce",
                    "created_at": "2026-11-29T10:00:00+00:00",
                }
            ],
            "next_cursor": None,
        },
    ),
    "POST /suppressions": OperationDoc(
        "Suppress an address",
        f"Add an address to the tenant's suppression list. {TOKEN}",
        request={"tenant_id": "acme", "address": "unsubscribed@example.org", "reason": "opt-out"},
        response={"ok": True, "added": True},
    ),
    "DELETE /suppressions/{address}": OperationDoc(
        "Unsuppress an address",
        f"Remove an address from the tenant's suppression list. {TENANT_SCOPE} {TOKEN}",
        response=_OK,
    ),
    "POST /webhooks": OperationDoc(
        "Create a webhook",
        "A URL that receives one signed POST per event (Standard Webhooks: `webhook-id`, "
        "`webhook-timestamp`, `webhook-signature`), retried for 24 hours and more. The signing "
        f"`secret` is in this answer only. {TOKEN}",
        request={
            "tenant_id": "acme",
            "url": "https://app.acme.example/hooks/mail",
            "event_types": ["sent", "error", "bounce"],
        },
        response={**_WEBHOOK, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
    ),
    "GET /webhooks": OperationDoc(
        "List webhooks",
        f"The tenant's webhooks with their delivery health. {TENANT_SCOPE} {TOKEN}",
        response={"webhooks": [_WEBHOOK]},
    ),
    "GET /webhooks/{webhook_id}": OperationDoc(
        "Show a webhook",
        f"One webhook with its delivery health. {TENANT_SCOPE} {TOKEN}",
        response=_WEBHOOK,
    ),
    "PATCH /webhooks/{webhook_id}": OperationDoc(
        "Change a webhook",
        f"Change its URL, event types or whether it is active. {TENANT_SCOPE} {TOKEN}",
        request={"event_types": ["bounce"], "active": True},
        response={**_WEBHOOK, "event_types": ["bounce"]},
    ),
    "DELETE /webhooks/{webhook_id}": OperationDoc(
        "Delete a webhook",
        f"Delete the webhook and its pending deliveries. {TENANT_SCOPE} {TOKEN}",
        response=_OK,
    ),
    "POST /webhooks/{webhook_id}/rotate-secret": OperationDoc(
        "Rotate a webhook's signing secret",
        "A new signing secret; until `previous_secret_until` deliveries are signed with both, "
        f"so the receiver can switch without losing any. {TENANT_SCOPE} {TOKEN}",
        request={"overlap_seconds": 86400},
        response={
            "id": "wh1",
            "secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "previous_secret_until": 1796076400,
        },
    ),
    "POST /webhooks/{webhook_id}/retry-failed": OperationDoc(
        "Retry failed webhook deliveries",
        f"Queue again the deliveries that gave up. {TENANT_SCOPE} {TOKEN}",
        response={"requeued": 3},
    ),
    "GET /download/{token}/{filename}": OperationDoc(
        "Download an offloaded attachment",
        "The file behind a large-attachment link in a sent message (tenant `large_file_config` "
        "with `action: rewrite`), streamed from storage. No token: the signed link is the "
        "credential. One `Range: bytes=...` gives 206; 404 for a link not signed by this "
        "service, 410 once it expired or its lifespan after the first download ended, 503 "
        "without `GMP_DOWNLOAD_SECRET`.",
        response="<the file's bytes>",
        media_type="application/octet-stream",
    ),
    "HEAD /download/{token}/{filename}": OperationDoc(
        "Check an offloaded attachment",
        "The headers a GET would answer (Content-Length, Content-Disposition, Accept-Ranges, "
        "ETag) without the body; does not count as a download.",
        response="",
        media_type="application/octet-stream",
    ),
    "GET /providers": OperationDoc(
        "List provider-feedback settings",
        "The tenant's SES / SendGrid / Mailgun / Postmark settings (secrets masked) and the "
        f"URL each provider must call. {TENANT_SCOPE} {TOKEN}",
        response={
            "providers": [
                {
                    "provider": "mailgun",
                    "tenant_id": "acme",
                    "settings": {"token": "********"},
                    "notification_path": "/providers/mailgun/acme",
                    "updated_at": "2026-11-29T10:00:00+00:00",
                }
            ]
        },
    ),
    "PUT /providers/{provider}": OperationDoc(
        "Set provider-feedback settings",
        'What verifies the provider\'s notifications: ses `{"topic_arns": [...]}` (required: '
        'anyone can sign SNS messages from a topic of theirs), sendgrid `{"public_key"}` (the '
        'Event Webhook verification key), mailgun `{"signing_key"}`, postmark `{"user", '
        f'"password"}}` and/or `{{"token"}}` (sent as `X-Webhook-Token`). {TENANT_SCOPE} '
        f"{TOKEN}",
        request={"topic_arns": ["arn:aws:sns:eu-west-1:123456789012:ses-feedback"]},
        response={
            "provider": "ses",
            "tenant_id": "acme",
            "settings": {"topic_arns": ["arn:aws:sns:eu-west-1:123456789012:ses-feedback"]},
            "notification_path": "/providers/ses/acme",
            "updated_at": "2026-11-29T10:00:00+00:00",
        },
    ),
    "DELETE /providers/{provider}": OperationDoc(
        "Remove provider-feedback settings",
        f"The provider's notifications are refused (404) from now on. {TENANT_SCOPE} {TOKEN}",
        response=_OK,
    ),
    "POST /providers/{provider}/{tenant_id}": OperationDoc(
        "Receive a provider notification",
        "Called by the provider, not by apps: no `X-API-Token`; the request is verified with "
        "the provider's own scheme (SNS signature and topic, SendGrid ECDSA signature, Mailgun "
        "HMAC, Postmark basic auth or token) and refused with 401 otherwise. Bounces and "
        "complaints become `bounce` events of the original message and suppression entries, "
        "as IMAP bounces do; SNS subscription confirmations are confirmed.",
        response={"ok": True, "recorded": 1, "correlated": 1, "duplicates": 0, "confirmed": None},
    ),
}


def operation_key(method: str, path: str) -> str:
    return f"{method.upper()} {path}"


def _extra(doc: OperationDoc) -> dict[str, Any]:
    extra: dict[str, Any] = {"summary": doc.summary, "description": doc.description}
    if doc.request is not None:
        extra["requestBody"] = {"content": {"application/json": {"example": doc.request}}}
    if doc.response is not None:
        extra["responses"] = {"200": {"content": {doc.media_type: {"example": doc.response}}}}
    return extra


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    """Fill `into` from `extra`; what a route declared itself (its examples) stays."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif key in ("summary", "description") or key not in into:
            into[key] = value


def apply_reference(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` (an OpenAPI document) with every operation's reference entry filled in."""
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            doc = OPERATIONS.get(operation_key(method, path))
            if doc is not None:
                _merge(operation, _extra(doc))
    return spec


def document_operations(app: FastAPI) -> None:
    """Serve the OpenAPI document with the reference applied (`/openapi.json`, `/docs`)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        # FastAPI caches the document and rebuilds it when routes change; filling in is
        # idempotent, so it is applied to whatever `build` returns.
        return apply_errors(apply_reference(build()))

    app.openapi = openapi  # type: ignore[method-assign]
