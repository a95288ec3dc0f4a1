# SPDX-License-Identifier: Apache-2.0
"""Prometheus families, in one registry per process (no import-time global state).

The four `gmp_*` counters and the `gmp_pending_messages` gauge keep the reference's names,
labels and help strings; the rest are ours (SPEC section 9).
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DELIVERY_LABELS = ("tenant_id", "tenant_name", "account_id", "account_name")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_AGE_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 7200, 21600, 86400)


class Metrics:
    """Every metric family the service exports, registered on `self.registry`."""

    def __init__(self) -> None:
        # When the queue gauges were last read from Postgres (health.refresh_queue_gauges).
        self.queue_gauges_at = float("-inf")
        self.queue_gauges_lock = asyncio.Lock()
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.sent = Counter("gmp_sent", "Total sent emails", DELIVERY_LABELS, registry=r)
        self.errors = Counter("gmp_errors", "Total send errors", DELIVERY_LABELS, registry=r)
        self.deferred = Counter(
            "gmp_deferred", "Total deferred emails", DELIVERY_LABELS, registry=r
        )
        self.rate_limited = Counter(
            "gmp_rate_limited", "Total rate limited occurrences", DELIVERY_LABELS, registry=r
        )
        self.pending = Gauge("gmp_pending_messages", "Current pending messages", registry=r)
        self.pending_by_tenant = Gauge(
            "gmp_pending_by_tenant_priority",
            "Unsent messages per tenant and priority",
            ("tenant_id", "priority"),
            registry=r,
        )
        self.oldest_pending = Gauge(
            "gmp_oldest_pending_seconds",
            "Age of the oldest unsent message per tenant",
            ("tenant_id",),
            registry=r,
        )
        self.account_healthy = Gauge(
            "gmp_account_healthy",
            "1 when the account's SMTP server accepts sessions, 0 while it is held for an "
            "account-level failure (TLS, authentication, connection, DNS)",
            ("tenant_id", "account_id"),
            registry=r,
        )
        self.enqueue_latency = Histogram(
            "gmp_enqueue_seconds",
            "Time to accept an add-messages request",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.enqueued = Counter("gmp_enqueued", "Messages accepted for delivery", registry=r)
        self.task_restarts = Counter(
            "gmp_task_restarts",
            "Background task crashes, each followed by a restart after a back-off",
            ["task"],
            registry=r,
        )
        self.smtp_latency = Histogram(
            "gmp_smtp_send_seconds",
            "Time for the SMTP server to accept one message",
            ("account_id",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.delivery_latency = Histogram(
            "gmp_enqueue_to_sent_seconds",
            "From enqueue to SMTP acceptance",
            buckets=_AGE_BUCKETS,
            registry=r,
        )
        self.queue_age = Histogram(
            "gmp_queue_age_seconds",
            "Age of messages when a sender leases them",
            buckets=_AGE_BUCKETS,
            registry=r,
        )
        self.sync_success = Counter(
            "gmp_sync_success", "Delivery-report calls acknowledged", ("tenant_id",), registry=r
        )
        self.sync_failure = Counter(
            "gmp_sync_failure", "Delivery-report calls that failed", ("tenant_id",), registry=r
        )
        self.attachment_cache = Counter(
            "gmp_attachment_cache",
            "Attachment cache lookups by result",
            ("result",),
            registry=r,
        )
        # Bounces, PEC receipts and suppression (issue 11).
        self.bounces = Counter(
            "gmp_bounces",
            "Bounces recognised, by tenant and type (hard/soft)",
            ("tenant_id", "bounce_type"),
            registry=r,
        )
        self.bounces_uncorrelated = Counter(
            "gmp_bounces_uncorrelated",
            "Bounces whose original message could not be found",
            ("mailbox",),
            registry=r,
        )
        self.pec_events = Counter(
            "gmp_pec_events", "PEC receipts and timeouts, by event kind", ("kind",), registry=r
        )
        self.suppressed_recipients = Counter(
            "gmp_suppressed_recipients",
            "Recipients refused at intake because they are on the suppression list",
            ("tenant_id",),
            registry=r,
        )
        self.suppression_entries = Gauge(
            "gmp_suppression_entries",
            "Addresses on each tenant's suppression list",
            ("tenant_id",),
            registry=r,
        )
        self.mailbox_last_success = Gauge(
            "gmp_mailbox_last_success_timestamp_seconds",
            "When each IMAP mailbox (bounce or PEC) was last polled successfully",
            ("mailbox", "kind"),
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "gmp_webhook_deliveries",
            "Webhook delivery attempts by result (delivered, failed, given_up)",
            ("tenant_id", "webhook_id", "result"),
            registry=r,
        )
        self.webhook_failing = Gauge(
            "gmp_webhook_consecutive_failures",
            "Failed attempts in a row per webhook endpoint (0: healthy)",
            ("tenant_id", "webhook_id"),
            registry=r,
        )
        self.webhook_pending = Gauge(
            "gmp_webhook_pending_deliveries",
            "Deliveries waiting for their (next) attempt per webhook endpoint",
            ("tenant_id", "webhook_id"),
            registry=r,
        )
        self.large_files = Counter(
            "gmp_large_files",
            "Oversized attachments by what the large-file policy did "
            "(uploaded, reused, warned, rejected, fallback)",
            ("tenant_id", "outcome"),
            registry=r,
        )
        self.large_file_downloads = Counter(
            "gmp_large_file_downloads",
            "Offloaded files served by the download route",
            ("tenant_id",),
            registry=r,
        )
        self.large_file_deletions = Counter(
            "gmp_large_file_deletions",
            "Expired offloaded files the cleanup job deleted (or failed to)",
            ("result",),
            registry=r,
        )
