# SPDX-License-Identifier: Apache-2.0
"""The webhook deliverer: one signed POST per (endpoint, event), retried on a schedule.

Each cycle leases up to `webhook_concurrency` due deliveries (`FOR UPDATE SKIP LOCKED`, so
across every sender process each delivery is attempted by one of them at a time) and POSTs them
concurrently, each bounded by `webhook_timeout_seconds`. A 2xx delivers; anything else (another
status, a timeout, a refused connection, a redirect, an address the outbound rules forbid)
counts as a failed attempt: the delivery waits for the next step of
`webhook_retry_delays_seconds` (1 m, 5 m, 30 m, 2 h, 6 h, 12 h, 24 h by default: about 44 h in
all) and is given up after the last one. Results are kept per endpoint (consecutive failures,
last error) and counted in `gmp_webhook_deliveries_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass

import asyncpg

from mail_proxy.config import Settings
from mail_proxy.db import webhooks as db
from mail_proxy.db.pool import DATABASE_ERRORS
from mail_proxy.db.webhooks import LeasedDelivery
from mail_proxy.encryption import SecretBox
from mail_proxy.errors import MailProxyError, OutboundError
from mail_proxy.metrics import Metrics
from mail_proxy_sender.delivery.waiting import first_of
from mail_proxy_sender.outbound import OutboundClient
from mail_proxy_sender.webhooks.signing import (
    encode_body,
    event_body,
    event_message_id,
    signed_headers,
)

log = logging.getLogger(__name__)
_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class Attempt:
    status: int | None  # the HTTP status, None when no answer came
    error: str | None  # None: delivered

    @property
    def delivered(self) -> bool:
        return self.error is None


@dataclass
class WebhookDeps:
    pool: asyncpg.Pool
    settings: Settings
    box: SecretBox
    metrics: Metrics
    owner: str


class WebhookDeliverer:
    def __init__(
        self,
        deps: WebhookDeps,
        *,
        http: OutboundClient,
        wake: asyncio.Event,
    ) -> None:
        self._d = deps
        self._http = http  # the SSRF guard: public addresses only, unless allow-listed
        self._wake = wake
        self._lease_seconds = deps.settings.webhook_timeout_seconds + 30.0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            wait = _POLL_SECONDS
            try:
                if await self.cycle():
                    continue
                async with self._d.pool.acquire() as conn:
                    due_in = await db.seconds_to_next_due(conn)
                if due_in is not None:
                    wait = min(wait, max(0.05, due_in))
            except DATABASE_ERRORS as exc:
                log.warning(
                    "webhook cycle failed", extra={"action": "webhook_error", "error": repr(exc)}
                )
            await first_of(stop, self._wake, timeout=wait)

    async def cycle(self) -> bool:
        """Attempt every delivery leased now; True when there were some."""
        s = self._d.settings
        async with self._d.pool.acquire() as conn:
            leased = await db.lease_deliveries(
                conn,
                owner=self._d.owner,
                limit=s.webhook_concurrency,
                lease_seconds=self._lease_seconds,
            )
        if not leased:
            return False
        try:
            await asyncio.gather(*(self._deliver(d) for d in leased))
        finally:
            # Cancelled (shutdown) mid-way: whatever is still leased goes back untouched.
            with contextlib.suppress(*DATABASE_ERRORS):
                async with self._d.pool.acquire() as conn:
                    await db.release_deliveries(
                        conn, delivery_ids=[d.id for d in leased], owner=self._d.owner
                    )
        return True

    async def _deliver(self, delivery: LeasedDelivery) -> None:
        attempt = await self.attempt(delivery)
        await self._record(delivery, attempt)

    async def attempt(self, delivery: LeasedDelivery) -> Attempt:
        """POST one event; never raises for what the endpoint or the network did."""
        try:
            sealed = [delivery.secret, delivery.previous_secret]
            secrets = [s for s in (self._d.box.decrypt(v) for v in sealed if v) if s]
        except MailProxyError:
            return Attempt(None, "cannot read the signing secret (encryption key changed?)")
        body = encode_body(event_body(delivery))
        headers = signed_headers(
            secrets=secrets,
            msg_id=event_message_id(delivery),
            body=body,
            now=dt.datetime.now(dt.UTC),
        )
        try:
            # Only the status matters: the answer's body is never read, so an endpoint that
            # answers gigabytes, or drips them, costs nothing.
            async with self._http.stream(
                "POST",
                delivery.url,
                content=body,
                headers=headers,
                timeout_seconds=self._d.settings.webhook_timeout_seconds,
            ) as response:
                status = response.status_code
        except OutboundError as exc:  # refused address, timeout, connection: str() is safe
            return Attempt(None, str(exc))
        if 200 <= status < 300:
            return Attempt(status, None)
        return Attempt(status, f"HTTP {status}")

    def retry_in(self, attempts_made: int) -> float | None:
        """Seconds until the next attempt after `attempts_made` failed ones; None: give up."""
        delays = self._d.settings.webhook_retry_delays_seconds
        if attempts_made > len(delays):
            return None
        return float(delays[attempts_made - 1])

    async def _record(self, delivery: LeasedDelivery, attempt: Attempt) -> None:
        labels = (delivery.tenant_id, delivery.webhook_id)
        m = self._d.metrics
        async with self._d.pool.acquire() as conn:
            if attempt.delivered:
                assert attempt.status is not None
                if await db.delivery_succeeded(
                    conn, delivery_id=delivery.id, owner=self._d.owner, status=attempt.status
                ):
                    m.webhook_deliveries.labels(*labels, "delivered").inc()
                return
            retry_in = self.retry_in(delivery.attempts + 1)
            failures = await db.delivery_failed(
                conn,
                delivery_id=delivery.id,
                owner=self._d.owner,
                status=attempt.status,
                error=attempt.error or "failed",
                retry_in_seconds=retry_in,
            )
        if failures is None:
            return  # the lease was lost meanwhile; its new holder records the outcome
        m.webhook_deliveries.labels(*labels, "failed" if retry_in is not None else "given_up").inc()
        log.warning(
            "webhook delivery failed",
            extra={
                "action": "webhook_failed" if retry_in is not None else "webhook_given_up",
                "tenant_id": delivery.tenant_id,
                "webhook_id": delivery.webhook_id,
                "event_id": delivery.event_id,
                "error": attempt.error,
                "attempts": delivery.attempts + 1,
                "retry_in_seconds": retry_in,
            },
        )
