# SPDX-License-Identifier: BUSL-1.1
"""Runs the inbound side of a sender process: one poller per configured mailbox, the PEC
timeouts, the inbound metrics, and the bounce-log purge.

The list of mailboxes is read again every `inbound_refresh_seconds`, at once on
`POST /instance/reload-bounce` (NOTIFY `mail_proxy_reload_bounce`), and whenever the operator
changes a mailbox: a poller whose settings changed is retired (its lease released) and a new
one starts, so changes apply without a restart. At start, `GMP_BOUNCE_*` seed the instance
bounce mailbox once when the stored one has no host (reference section 10).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from mail_proxy.config import Settings
from mail_proxy.db.bounces import SuppressionPolicy, purge_bounce_log
from mail_proxy.db.mailboxes import MailboxConfig, configured_mailboxes, mailbox_status
from mail_proxy.db.pec import apply_pec_timeouts
from mail_proxy.db.pool import DATABASE_ERRORS
from mail_proxy.db.suppressions import count_suppressions
from mail_proxy.encryption import SecretBox
from mail_proxy.metrics import Metrics
from mail_proxy_sender.delivery.waiting import first_of
from mail_proxy_sender.inbound.handlers import HandlerPolicy
from mail_proxy_sender.inbound.poller import MailboxPoller, PollerDeps
from mail_proxy_sender.inbound.routing import RoutingCache

log = logging.getLogger(__name__)
_DAY = 86400


@dataclass
class InboundDeps:
    pool: asyncpg.Pool
    settings: Settings
    box: SecretBox
    metrics: Metrics
    owner: str
    routing: RoutingCache
    reload: asyncio.Event  # set by NOTIFY mail_proxy_reload_bounce
    on_events: Callable[[], None]  # wake the reporter


async def seed_bounce_mailbox(conn: asyncpg.Connection, settings: Settings, box: SecretBox) -> bool:
    """Copy GMP_BOUNCE_* into the instance row once, when it has no bounce host yet."""
    if not settings.bounce_imap_host:
        return False
    password = settings.bounce_imap_password
    status: str = await conn.execute(
        "UPDATE instance SET bounce_enabled = $1, bounce_imap_host = $2, bounce_imap_port = $3, "
        "bounce_imap_user = $4, bounce_imap_password = $5, bounce_imap_ssl = $6, "
        "bounce_poll_interval = $7, updated_at = now() "
        "WHERE id = 1 AND bounce_imap_host IS NULL AND managed_by IS NULL",
        settings.bounce_enabled,
        settings.bounce_imap_host,
        settings.bounce_imap_port,
        settings.bounce_imap_user,
        box.encrypt(password.get_secret_value()) if password else None,
        settings.bounce_imap_ssl,
        settings.bounce_poll_interval_seconds,
    )
    return status == "UPDATE 1"


class InboundSupervisor:
    def __init__(self, deps: InboundDeps) -> None:
        self._d = deps
        self._pollers: dict[str, tuple[MailboxPoller, asyncio.Task[None]]] = {}
        s = deps.settings
        self._suppression = SuppressionPolicy(
            soft_limit=s.bounce_soft_limit, soft_window_seconds=s.bounce_soft_window_days * _DAY
        )
        self._poller_deps = PollerDeps(
            pool=deps.pool,
            settings=s,
            box=deps.box,
            metrics=deps.metrics,
            owner=deps.owner,
            policy=self._policy,
            on_events=deps.on_events,
        )

    def _policy(self) -> HandlerPolicy | None:
        routing = self._d.routing.current
        if routing is None:
            return None
        return HandlerPolicy(
            secret=routing.secret,
            suppression=self._suppression,
            recent_seconds=int(self._d.settings.bounce_recent_days * _DAY),
        )

    @property
    def pollers(self) -> dict[str, MailboxPoller]:
        return {key: poller for key, (poller, _) in self._pollers.items()}

    async def run(self, stop: asyncio.Event) -> None:
        s = self._d.settings
        try:
            try:
                async with self._d.pool.acquire() as conn:
                    if await seed_bounce_mailbox(conn, s, self._d.box):
                        log.info("bounce mailbox seeded from GMP_BOUNCE_*")
            except DATABASE_ERRORS as exc:
                log.warning("bounce mailbox not seeded", extra={"error": repr(exc)})
            while not stop.is_set():
                self._d.reload.clear()
                try:
                    await self._cycle(stop)
                except DATABASE_ERRORS as exc:
                    log.warning("inbound cycle interrupted", extra={"error": repr(exc)})
                await first_of(stop, self._d.reload, timeout=s.inbound_refresh_seconds)
        finally:
            await self._retire(list(self._pollers))

    async def _cycle(self, stop: asyncio.Event) -> None:
        s = self._d.settings
        await self._d.routing.refresh()
        async with self._d.pool.acquire() as conn:
            wanted = await configured_mailboxes(
                conn, pec_poll_interval_seconds=s.pec_poll_interval_seconds
            )
        await self._reconcile(wanted, stop)
        now = int(time.time())
        async with self._d.pool.acquire() as conn:
            timeouts = await apply_pec_timeouts(
                conn,
                now_ts=now,
                acceptance_timeout_seconds=s.pec_acceptance_timeout_seconds,
                delivery_timeout_seconds=s.pec_delivery_timeout_seconds,
            )
            if timeouts is not None:
                accepted, delivered = timeouts
                if accepted:
                    self._d.metrics.pec_events.labels("pec_timeout").inc(accepted)
                if delivered:
                    self._d.metrics.pec_events.labels("pec_delivery_timeout").inc(delivered)
                if accepted or delivered:
                    self._d.on_events()
                await purge_bounce_log(
                    conn, older_than_seconds=self._suppression.soft_window_seconds
                )
            await self._refresh_gauges(conn)

    async def _refresh_gauges(self, conn: asyncpg.Connection) -> None:
        """Every process exports the shared figures (alert on the max across pods)."""
        m = self._d.metrics
        for row in await mailbox_status(conn):
            if row["last_success_ts"] is not None:
                m.mailbox_last_success.labels(row["key"], row["kind"]).set(row["last_success_ts"])
        for tenant_id, count in (await count_suppressions(conn)).items():
            m.suppression_entries.labels(tenant_id).set(count)

    async def _reconcile(self, wanted: list[MailboxConfig], stop: asyncio.Event) -> None:
        by_key = {mailbox.key: mailbox for mailbox in wanted}
        stale = [
            key for key, (poller, _) in self._pollers.items() if by_key.get(key) != poller.mailbox
        ]
        await self._retire(stale)
        for key, mailbox in by_key.items():
            if key in self._pollers:
                continue
            poller = MailboxPoller(mailbox, self._poller_deps)
            task = asyncio.create_task(poller.run(stop), name=f"mailbox-{key}")
            self._pollers[key] = (poller, task)
            log.info("mailbox poller started", extra={"mailbox": key, "kind": mailbox.kind})

    async def _retire(self, keys: list[str]) -> None:
        entries = [self._pollers.pop(key) for key in keys if key in self._pollers]
        for poller, _ in entries:
            poller.retire.set()
        tasks = [task for _, task in entries]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=10)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
