# SPDX-License-Identifier: Apache-2.0
"""The reporter: delivery reports to tenant applications (sync protocol, reference section 5).

Each cycle claims the tenants that are due (unreported events, or an idle heartbeat every
`sync_interval_seconds` for active tenants with their own URL once their do-not-disturb time
has passed), and serves them concurrently, each call bounded by `sync_timeout_seconds`:

- POST `{"delivery_report": [...]}` to `client_base_url + (client_sync_path or
  "/mail-proxy/sync")` with the tenant's bearer/basic credentials; tenants without a URL use
  the global `GMP_CLIENT_SYNC_URL` (token or user/password); with neither, their events are
  marked reported so retention can purge them;
- a 2xx acknowledges the batch and records the sync (`next_sync_after` -> `dnd_until`);
  `queued > 0` calls again after `sync_queued_delay_seconds`, at most
  `sync_queued_max_rounds` times per claim;
- anything else releases the batch and backs the tenant off exponentially (capped), visible
  in `sync_failures`/`sync_retry_at`/`last_sync_error` and `gmp_sync_failure_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from mail_proxy.config import Settings
from mail_proxy.db import reports as db
from mail_proxy.db.pool import DATABASE_ERRORS
from mail_proxy.db.reports import ClaimedTenant, PendingEvent
from mail_proxy.encryption import SecretBox
from mail_proxy.errors import OutboundError
from mail_proxy.metrics import Metrics
from mail_proxy.redact import open_client_auth, redact_url
from mail_proxy_sender.attachments.http_auth import auth_headers, join_url, same_origin
from mail_proxy_sender.delivery.waiting import first_of
from mail_proxy_sender.outbound import OutboundClient
from mail_proxy_sender.reports.items import report_body

log = logging.getLogger(__name__)
DEFAULT_SYNC_PATH = "/mail-proxy/sync"
_DB_ERRORS = DATABASE_ERRORS
_MIN_CYCLE_GAP_SECONDS = 0.2  # lets a burst of outcomes leave in one report
_MAX_REDIRECTS = 5
_FOLLOWED = frozenset({307, 308})  # keep method and body (RFC 9110 15.4.8-9)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class SyncTarget:
    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class SyncAnswer:
    accepted: bool  # a 2xx: the batch is acknowledged
    queued: int = 0
    next_sync_after: int | None = None
    error: str | None = None  # why the call failed (no secrets: status or exception type)


def parse_answer(body: Any) -> SyncAnswer:
    """Fields of the client's answer (section 5.3); a non-JSON body counts as an empty one."""
    if not isinstance(body, dict):
        return SyncAnswer(accepted=True)
    queued = body.get("queued")
    after = body.get("next_sync_after")
    return SyncAnswer(
        accepted=True,
        queued=queued if isinstance(queued, int) and not isinstance(queued, bool) else 0,
        next_sync_after=int(after) if isinstance(after, int | float) else None,
    )


@dataclass
class ReporterDeps:
    pool: asyncpg.Pool
    settings: Settings
    box: SecretBox
    metrics: Metrics
    owner: str


class Reporter:
    def __init__(self, deps: ReporterDeps, *, http: OutboundClient, wake: asyncio.Event):
        self._d = deps
        self._http = http
        self._wake = wake
        s = deps.settings
        self._claim_seconds = s.sync_timeout_seconds + 30.0
        self._poll_seconds = min(5.0, max(0.5, s.sync_interval_seconds / 10))
        self._serving: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim due tenants and serve each in its own task until `stop`; never waits for a
        slow tenant: a tenant whose endpoint hangs only holds its own task (issue 10 item 6)."""
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    busy = await self.cycle()
                except _DB_ERRORS as exc:
                    log.warning(
                        "report cycle failed", extra={"action": "sync_error", "error": repr(exc)}
                    )
                    busy = False
                await asyncio.sleep(_MIN_CYCLE_GAP_SECONDS)
                if busy:
                    continue
                await first_of(stop, self._wake, timeout=self._poll_seconds)
        finally:
            await self._drain()

    async def cycle(self) -> bool:
        """Start serving every tenant that is due now and not being served; True when some
        were started. Up to `sync_concurrency` tenants are served at once."""
        s = self._d.settings
        room = s.sync_concurrency - len(self._serving)
        if room <= 0:
            return False
        async with self._d.pool.acquire() as conn:
            claimed = await db.claim_tenants(
                conn,
                owner=self._d.owner,
                now=time.time(),
                heartbeat_seconds=s.sync_interval_seconds,
                claim_seconds=self._claim_seconds,
                limit=room,
            )
        for tenant in claimed:
            task = asyncio.create_task(self._serve(tenant), name=f"report-{tenant.id}")
            self._serving.add(task)
            # A finished tenant frees a slot and may have more to say: look again at once.
            task.add_done_callback(self._served)
        return bool(claimed)

    def _served(self, task: asyncio.Task[None]) -> None:
        self._serving.discard(task)
        self._wake.set()

    async def _drain(self, grace_seconds: float = 5.0) -> None:
        """Let calls in progress finish (bounded), then cancel the rest; their claims and
        event leases run out and another reporter takes them."""
        if not self._serving:
            return
        _, pending = await asyncio.wait(set(self._serving), timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def target(self, tenant: ClaimedTenant) -> SyncTarget | None:
        if tenant.client_base_url:
            auth = open_client_auth(self._d.box, tenant.client_auth)
            url = join_url(tenant.client_base_url, tenant.client_sync_path, DEFAULT_SYNC_PATH)
            return SyncTarget(url, auth_headers(auth))
        s = self._d.settings
        if not s.client_sync_url:
            return None
        if s.client_sync_token is not None:
            auth = {"method": "bearer", "token": s.client_sync_token.get_secret_value()}
        elif s.client_sync_user:
            password = s.client_sync_password.get_secret_value() if s.client_sync_password else ""
            auth = {"method": "basic", "user": s.client_sync_user, "password": password}
        else:
            auth = {}
        return SyncTarget(s.client_sync_url, auth_headers(auth))

    async def _serve(self, tenant: ClaimedTenant) -> None:
        try:
            await self._serve_claimed(tenant)
        except _DB_ERRORS as exc:
            log.warning(
                "report failed",
                extra={"action": "sync_error", "tenant_id": tenant.id, "error": repr(exc)},
            )
        finally:
            with contextlib.suppress(*_DB_ERRORS):
                async with self._d.pool.acquire() as conn:
                    await db.release_claim(conn, tenant_id=tenant.id, owner=self._d.owner)

    async def _serve_claimed(self, tenant: ClaimedTenant) -> None:
        s = self._d.settings
        target = self.target(tenant)
        if target is None:
            async with self._d.pool.acquire() as conn:
                await db.discard_events(conn, tenant_id=tenant.id, now=time.time())
            return
        queued = False
        for round_number in range(max(1, s.sync_queued_max_rounds)):
            events = await self._lease(tenant)
            if (
                not events
                and not queued
                and not (round_number == 0 and self._heartbeat_due(tenant))
            ):
                return
            answer = await self._post(target, events)
            if not answer.accepted:
                await self._failed(tenant, events, answer, url=target.url)
                return
            await self._succeeded(tenant, events, answer)
            if len(events) >= s.sync_batch_size:
                continue
            if answer.queued <= 0:
                return
            queued = True
            await asyncio.sleep(s.sync_queued_delay_seconds)
            async with self._d.pool.acquire() as conn:
                await db.extend_claim(
                    conn,
                    tenant_id=tenant.id,
                    owner=self._d.owner,
                    claim_seconds=self._claim_seconds,
                )

    def _heartbeat_due(self, tenant: ClaimedTenant) -> bool:
        now = time.time()
        return bool(
            tenant.active
            and tenant.client_base_url
            and (tenant.last_sync_ts or 0) <= now - self._d.settings.sync_interval_seconds
            and (tenant.dnd_until or 0) <= now
        )

    async def _lease(self, tenant: ClaimedTenant) -> list[PendingEvent]:
        async with self._d.pool.acquire() as conn:
            return await db.lease_events(
                conn,
                tenant_id=tenant.id,
                owner=self._d.owner,
                limit=self._d.settings.sync_batch_size,
                lease_seconds=self._claim_seconds,
            )

    async def _post(self, target: SyncTarget, events: list[PendingEvent]) -> SyncAnswer:
        """POST the report; 307/308 are followed (same method and body, at most
        `_MAX_REDIRECTS`, credentials kept only on the same origin, every hop through the
        outbound guard); 301/302/303 would turn the POST into a GET and lose the report, so they
        are a failure whose error names the new location."""
        url = target.url
        headers = dict(target.headers)
        report = report_body(events)
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                response = await self._http.request(
                    "POST",
                    url,
                    json=report,
                    headers=headers,
                    timeout_seconds=self._d.settings.sync_timeout_seconds,
                )
            except OutboundError as exc:
                return SyncAnswer(accepted=False, error=str(exc))
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                break
            try:
                next_url = str(response.url.join(location))
            except (httpx.InvalidURL, ValueError):
                return SyncAnswer(
                    accepted=False,
                    error=f"HTTP {response.status_code} redirect to an invalid location",
                )
            if response.status_code not in _FOLLOWED:
                return SyncAnswer(
                    accepted=False,
                    error=(
                        f"HTTP {response.status_code} redirect to {redact_url(next_url)}: "
                        "a POST cannot follow it; set the tenant's sync URL to the new location"
                    ),
                )
            if not same_origin(next_url, url):
                headers.pop("Authorization", None)  # as httpx does: no credentials elsewhere
            url = next_url
        else:
            return SyncAnswer(accepted=False, error=f"more than {_MAX_REDIRECTS} redirects")
        if not response.is_success:
            return SyncAnswer(accepted=False, error=f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and (body.get("error") or body.get("not_found")):
            log.info(
                "client reported problems with some messages",
                extra={
                    "action": "sync_client_errors",
                    "error_ids": body.get("error"),
                    "not_found": body.get("not_found"),
                },
            )
        return parse_answer(body)

    async def _succeeded(
        self, tenant: ClaimedTenant, events: list[PendingEvent], answer: SyncAnswer
    ) -> None:
        now = time.time()
        dnd = (
            answer.next_sync_after
            if answer.next_sync_after and answer.next_sync_after > now
            else None
        )
        async with self._d.pool.acquire() as conn, conn.transaction():
            if events:
                await db.ack_events(
                    conn, event_ids=[e.id for e in events], owner=self._d.owner, now=now
                )
            await db.sync_succeeded(conn, tenant_id=tenant.id, now=now, dnd_until=dnd)
        self._d.metrics.sync_success.labels(tenant.id).inc()

    async def _failed(
        self, tenant: ClaimedTenant, events: list[PendingEvent], answer: SyncAnswer, *, url: str
    ) -> None:
        s = self._d.settings
        delay = min(
            s.sync_backoff_max_seconds,
            s.sync_backoff_base_seconds * 2 ** min(tenant.sync_failures, 30),
        )
        retry_at = int(time.time() + delay * random.uniform(0.9, 1.1))
        error = answer.error or "failed"
        async with self._d.pool.acquire() as conn, conn.transaction():
            if events:
                await db.release_events(conn, event_ids=[e.id for e in events], owner=self._d.owner)
            failures = await db.sync_failed(
                conn, tenant_id=tenant.id, retry_at=retry_at, error=error
            )
        self._d.metrics.sync_failure.labels(tenant.id).inc()
        log.warning(
            "delivery report failed",
            extra={
                "action": "sync_failed",
                "tenant_id": tenant.id,
                "url": url,  # credentials and query values are masked by the log handler
                "error": error,
                "failures": failures,
                "retry_at": retry_at,
            },
        )
