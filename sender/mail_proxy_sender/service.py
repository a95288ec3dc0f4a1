# SPDX-License-Identifier: Apache-2.0
"""A sender process: leasing worker, SMTP lanes, outcome writer, reporter, webhooks, retention.

`run_sender(ctx, stop)` runs until `stop` is set (SIGTERM), then drains: no new leases, sends
in progress get `shutdown_grace_seconds` to finish, every unstarted message is given back to
the queue, and queued outcomes are written. A crash of the leasing loop or of a
side task (reporter, webhooks, retention, inbound, cleanup) is logged, counted and restarted
with back-off (`supervisor.py`); only the parts the drain itself needs (outcome writer, lease
keeper, LISTEN) stop the sender when they fail, and that is raised so the process restarts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from mail_proxy.config import Settings
from mail_proxy.db.notify import DOMAIN_BACKOFF_CHANNEL
from mail_proxy.encryption import SecretBox
from mail_proxy.large_files.links import LinkSigner
from mail_proxy.metrics import Metrics
from mail_proxy_sender.attachments.cache import AttachmentCache, CacheLimits
from mail_proxy_sender.attachments.fetch import AttachmentFetcher, FetchLimits
from mail_proxy_sender.attachments.offload import Offloader
from mail_proxy_sender.delivery.attempt import Deliverer
from mail_proxy_sender.delivery.connection_slots import ConnectionSlots
from mail_proxy_sender.delivery.dispatcher import Dispatcher, DispatcherDeps
from mail_proxy_sender.delivery.domain_backoff import DomainBackoff
from mail_proxy_sender.delivery.domain_backoff_channel import DomainBackoffChannel
from mail_proxy_sender.delivery.failures import AccountFailure
from mail_proxy_sender.delivery.lanes import Job
from mail_proxy_sender.delivery.lease_keeper import LeaseKeeper
from mail_proxy_sender.delivery.outcome_writer import OutcomeWriter
from mail_proxy_sender.delivery.retry import RetryPolicy
from mail_proxy_sender.delivery.smtp_target import default_options
from mail_proxy_sender.delivery.wakeups import Wakeups
from mail_proxy_sender.inbound.routing import RoutingCache
from mail_proxy_sender.inbound.supervisor import InboundDeps, InboundSupervisor
from mail_proxy_sender.maintenance.large_file_cleanup import run_large_file_cleanup
from mail_proxy_sender.maintenance.retention import run_retention
from mail_proxy_sender.outbound import OutboundClient
from mail_proxy_sender.reports.reporter import Reporter, ReporterDeps
from mail_proxy_sender.supervisor import supervise
from mail_proxy_sender.webhooks.deliverer import WebhookDeliverer, WebhookDeps

log = logging.getLogger(__name__)
_MB = 1024 * 1024
# Beyond `shutdown_grace_seconds`, for the outcome writer's last flush, the side tasks and the
# releases of leases and connection slots: short of the chart's pod grace (drainSeconds + 15),
# so that a drain held by the database ends with a log line rather than a SIGKILL.
_DRAIN_SLACK_SECONDS = 12.0


def new_owner_id() -> str:
    """Unique per process: host, pid and a random part (pids repeat across restarts)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass
class SenderContext:
    settings: Settings
    pool: asyncpg.Pool
    box: SecretBox
    metrics: Metrics
    dsn: str  # for the LISTEN connection, outside the pool
    owner: str = field(default_factory=new_owner_id)
    # Signs large-file download links (mail_proxy.large_files.secret); None: no links.
    download_secret: bytes | None = field(default=None, repr=False)
    # The per-domain back-off, shared with the other senders (set by run_sender).
    domains: DomainBackoff | None = None


def _cache(settings: Settings) -> AttachmentCache:
    return AttachmentCache(
        CacheLimits(
            memory_max_bytes=int(settings.cache_memory_max_mb * _MB),
            memory_ttl_seconds=settings.cache_memory_ttl_seconds,
            disk_dir=settings.cache_disk_dir,
            disk_max_bytes=int(settings.cache_disk_max_mb * _MB),
            disk_ttl_seconds=settings.cache_disk_ttl_seconds,
            disk_threshold_bytes=int(settings.cache_disk_threshold_kb * 1024),
        )
    )


async def _precreate_series(ctx: SenderContext) -> None:
    """Every account's delivery counters exist from the start, at 0 (reference behaviour)."""
    async with ctx.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT a.id, a.tenant_id, coalesce(t.name, t.id) AS tenant_name "
            "FROM accounts a JOIN tenants t ON t.id = a.tenant_id"
        )
    m = ctx.metrics
    for row in rows:
        labels = (row["tenant_id"], row["tenant_name"], row["id"], row["id"])
        for family in (m.sent, m.errors, m.deferred, m.rate_limited):
            family.labels(*labels)


async def run_sender(ctx: SenderContext, stop: asyncio.Event) -> None:
    s = ctx.settings
    domain_channel = DomainBackoffChannel(ctx.pool)
    domains = DomainBackoff(
        base_seconds=s.throttle_base_seconds,
        max_seconds=s.throttle_max_seconds,
        publish=domain_channel.publish,
    )
    domain_channel.attach(domains)
    ctx.domains = domains
    wakeups = Wakeups(ctx.dsn, {DOMAIN_BACKOFF_CHANNEL: domain_channel.received})
    slots = ConnectionSlots(
        ctx.pool,
        owner=ctx.owner,
        lease_seconds=s.lease_seconds,
        per_process_limit=s.smtp_connections_per_account,
    )
    keeper = LeaseKeeper(
        ctx.pool, owner=ctx.owner, lease_seconds=s.lease_seconds, also_renew=slots.renew
    )
    # Every call a tenant can point somewhere goes through the SSRF guard.
    attachment_http = OutboundClient(s.outbound_policy, follow_redirects=True, max_redirects=5)
    sync_http = OutboundClient(s.outbound_policy, follow_redirects=False)
    webhook_http = OutboundClient(s.outbound_policy, follow_redirects=False)
    writer = OutcomeWriter(
        ctx.pool,
        owner=ctx.owner,
        metrics=ctx.metrics,
        flush_seconds=s.outcome_flush_seconds,
        on_recorded=wakeups.reports.set,
        on_stored=keeper.drop,
    )
    fetcher = AttachmentFetcher(
        http=attachment_http,
        cache=_cache(s),
        limits=FetchLimits(
            timeout_seconds=s.attachment_timeout_seconds,
            attachment_max_bytes=s.attachment_max_bytes,
            message_max_bytes=s.message_max_bytes,
            allowed_roots=s.attachment_allowed_roots,
        ),
        metrics=ctx.metrics,
    )
    dispatcher: Dispatcher | None = None
    routing = RoutingCache(ctx.pool)
    await routing.refresh()

    async def on_throttled(job: Job, untried: bool = False) -> None:
        if dispatcher is not None:
            await dispatcher.on_throttled(job, untried=untried)

    async def on_too_many_connections(job: Job) -> bool:
        return dispatcher is not None and await dispatcher.on_too_many_connections(job)

    async def on_account_failure(job: Job, failure: AccountFailure) -> None:
        if dispatcher is not None:
            await dispatcher.on_account_failure(job, failure)

    async def on_account_ok(job: Job) -> None:
        if dispatcher is not None:
            await dispatcher.on_account_ok(job)

    deliverer = Deliverer(
        fetcher=fetcher,
        box=ctx.box,
        retry=lambda: RetryPolicy.from_settings(s),
        writer=writer,
        keeper=keeper,
        smtp_options=default_options(
            timeout_seconds=s.smtp_timeout_seconds,
            implicit_tls_ports=s.smtp_implicit_tls_ports,
            ca_file=s.smtp_ca_file,
            reconnect_attempts=s.smtp_reconnect_attempts,
            data_timeout_seconds=s.smtp_data_timeout_seconds,
            policy=s.outbound_policy,  # account hosts are a tenant's choice too
        ),
        metrics=ctx.metrics,
        on_throttled=on_throttled,
        on_too_many_connections=on_too_many_connections,
        on_account_failure=on_account_failure,
        on_account_ok=on_account_ok,
        routing=lambda: routing.current,
        domains=domains,
        offloader=Offloader(
            fetcher=fetcher,
            pool=ctx.pool,
            signer=LinkSigner(ctx.download_secret) if ctx.download_secret else None,
            settings=s,
            metrics=ctx.metrics,
        ),
    )
    dispatcher = Dispatcher(
        DispatcherDeps(ctx.pool, s, ctx.metrics, ctx.owner, keeper, slots),
        deliver=deliverer,
        wake=wakeups.work,
    )
    reporter = Reporter(
        ReporterDeps(ctx.pool, s, ctx.box, ctx.metrics, ctx.owner),
        http=sync_http,
        wake=wakeups.reports,
    )
    webhooks = WebhookDeliverer(
        WebhookDeps(ctx.pool, s, ctx.box, ctx.metrics, ctx.owner),
        http=webhook_http,
        wake=wakeups.webhooks,
    )
    inbound = InboundSupervisor(
        InboundDeps(
            pool=ctx.pool,
            settings=s,
            box=ctx.box,
            metrics=ctx.metrics,
            owner=ctx.owner,
            routing=routing,
            reload=wakeups.inbound,
            on_events=wakeups.reports.set,
        )
    )
    await _precreate_series(ctx)
    log.info("sender started", extra={"action": "sender_start", "owner": ctx.owner})

    halt = asyncio.Event()  # stop, or a part crashed
    listen_stop = asyncio.Event()  # also ends the heartbeat, once outcomes are stored
    writer_task = asyncio.create_task(writer.run(), name="outcome-writer")
    keeper_task = asyncio.create_task(keeper.run(listen_stop), name="lease-keeper")
    dispatcher_task = asyncio.create_task(
        supervise("dispatcher", lambda: dispatcher.run(halt), stop=halt, metrics=ctx.metrics),
        name="dispatcher",
    )

    def supervised(name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        # A crash is logged, counted and restarted with back-off (supervisor.py), never the
        # end of the process.
        return asyncio.create_task(supervise(name, run, stop=halt, metrics=ctx.metrics), name=name)

    parts = {
        dispatcher_task,
        asyncio.create_task(wakeups.run(listen_stop), name="wakeups"),
        supervised("domain-backoff-sharing", lambda: domain_channel.run(halt)),
        keeper_task,
        supervised("connection-sharing", lambda: dispatcher.share_connections(halt)),
        supervised("reporter", lambda: reporter.run(halt)),
        supervised("webhooks", lambda: webhooks.run(halt)),
        supervised("retention", lambda: run_retention(ctx.pool, s, halt)),
        supervised("inbound", lambda: inbound.run(halt)),
        supervised(
            "large-file-cleanup", lambda: run_large_file_cleanup(ctx.pool, s, ctx.metrics, halt)
        ),
    }
    stop_task = asyncio.create_task(stop.wait())
    crashed: BaseException | None = None
    try:
        done, _ = await asyncio.wait(
            {stop_task, writer_task, *parts}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done - {stop_task}:
            crashed = task.exception() or RuntimeError(f"{task.get_name()} ended early")
            log.error("sender part crashed", exc_info=crashed, extra={"action": "crash"})
    finally:
        halt.set()
        stop_task.cancel()
        # Postgres up but answering nothing (a frozen VM, a lock pile-up) would hold the drain's
        # queries, the release of cancelled ones and the pool's close for ever: past the drain's
        # own bounds it is cut short and the pool's connections closed under it (what was not
        # stored by then is logged as lost), and the process ends.
        bound = s.shutdown_grace_seconds + _DRAIN_SLACK_SECONDS
        try:
            async with asyncio.timeout(bound):
                # The leasing loop finishes its cycle first, so nothing is leased after the drain.
                await asyncio.gather(dispatcher_task, return_exceptions=True)
                await _drain(dispatcher, writer, s)
                writer_task.cancel()  # done already, unless the database was away for the drain
                listen_stop.set()
                await asyncio.wait(parts, timeout=5)  # a report call in progress may finish
                for task in parts:
                    task.cancel()
                await asyncio.gather(*parts, writer_task, return_exceptions=True)
                await slots.close()
        except TimeoutError:
            log.error(
                "drain held by the database; its connections are closed",
                extra={
                    "action": "drain_stuck",
                    "after_seconds": bound,
                    "owner": ctx.owner,
                    "outcomes_lost": writer.unstored,
                },
            )
            for task in (*parts, writer_task):
                task.cancel()
            ctx.pool.terminate()
        await attachment_http.aclose()
        await sync_http.aclose()
        await webhook_http.aclose()
        log.info("sender stopped", extra={"action": "sender_stop", "owner": ctx.owner})
    if crashed is not None:
        raise crashed


async def _drain(dispatcher: Dispatcher, writer: OutcomeWriter, settings: Settings) -> None:
    await dispatcher.close(settings.shutdown_grace_seconds)
    await writer.close()
