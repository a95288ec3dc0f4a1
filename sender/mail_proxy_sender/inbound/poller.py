# SPDX-License-Identifier: BUSL-1.1
"""One IMAP mailbox, polled by exactly one process at a time.

Every process runs a `MailboxPoller` per configured mailbox; only the one holding the mailbox's
lease (`mail_proxy.db.mailboxes`) reads it. The lease lasts 1.5 poll intervals and is renewed
by every recorded message and every poll, and the others try to take it every quarter
interval, so a dead holder's mailbox is taken over within two poll intervals.

A poll: connect, SELECT (a new UIDVALIDITY starts the UID state over), `UID SEARCH` above the
last UID, and for each new message, in ascending order: FETCH (without setting \\Seen), then
in ONE transaction that first checks the lease is still ours, record what it says and advance
`last_uid`. So a message is recorded exactly once across restarts and failovers. Afterwards,
the processed message is flagged `\\Seen`, moved, or left alone (per mailbox).

A message the parsers choke on is logged and skipped (its UID advances): no input may wedge a
mailbox. A database outage or an IMAP failure only ends this poll; the next one retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from mail_proxy.config import Settings
from mail_proxy.db.mailboxes import (
    MailboxConfig,
    MailboxState,
    claim_mailbox,
    lock_held,
    record_poll,
    release_mailbox,
    set_position,
)
from mail_proxy.db.pool import DATABASE_ERRORS, database_unavailable
from mail_proxy.encryption import SecretBox
from mail_proxy.errors import EncryptionError
from mail_proxy.metrics import Metrics
from mail_proxy_sender.delivery.waiting import first_of
from mail_proxy_sender.inbound.handlers import Handled, HandlerPolicy, handle_bounce, handle_pec
from mail_proxy_sender.inbound.imap_client import ImapError, ImapSession, ImapTarget

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Handled]]


class LostLease(Exception):
    """Another process holds the mailbox now: stop reading it."""


@dataclass
class PollerDeps:
    pool: asyncpg.Pool
    settings: Settings
    box: SecretBox
    metrics: Metrics
    owner: str
    policy: Callable[[], HandlerPolicy | None]
    on_events: Callable[[], None]


class MailboxPoller:
    def __init__(self, mailbox: MailboxConfig, deps: PollerDeps) -> None:
        self.mailbox = mailbox
        self._d = deps
        self.retire = asyncio.Event()
        self.poke = asyncio.Event()
        self.holding = False
        interval = max(0.2, mailbox.poll_interval_seconds)
        self.interval = interval
        self.lease_seconds = 1.5 * interval
        self._handler: Handler = handle_pec if mailbox.kind == "pec" else handle_bounce

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not (stop.is_set() or self.retire.is_set()):
                wait = self.interval / 4
                try:
                    state = await self._claim()
                    if state is not None:
                        self.holding = True
                        await self._poll_and_record(state)
                        wait = self.interval
                    else:
                        self.holding = False
                except LostLease:
                    self.holding = False
                    log.warning("mailbox lease lost", extra={"mailbox": self.mailbox.key})
                except DATABASE_ERRORS as exc:
                    log.warning(
                        "mailbox poll interrupted by the database",
                        extra={"mailbox": self.mailbox.key, "error": repr(exc)},
                    )
                self.poke.clear()
                await first_of(stop, self.retire, self.poke, timeout=wait)
        finally:
            if self.holding:
                with contextlib.suppress(*DATABASE_ERRORS):
                    async with self._d.pool.acquire() as conn:
                        await release_mailbox(conn, key=self.mailbox.key, owner=self._d.owner)
            self.holding = False

    async def _claim(self) -> MailboxState | None:
        async with self._d.pool.acquire() as conn:
            return await claim_mailbox(
                conn, mailbox=self.mailbox, owner=self._d.owner, lease_seconds=self.lease_seconds
            )

    def _target(self) -> ImapTarget:
        m = self.mailbox
        try:
            password = self._d.box.decrypt(m.password) if m.password else ""
        except EncryptionError as exc:
            raise ImapError(f"cannot read the stored IMAP password: {exc}") from None
        return ImapTarget(
            host=m.host,
            port=m.port,
            user=m.user,
            password=password or "",
            folder=m.folder,
            security=m.security,
            timeout_seconds=self._d.settings.imap_timeout_seconds,
            ca_file=self._d.settings.imap_ca_file,
            # A tenant chose this host (its own bounce mailbox, a PEC account): public addresses
            # only, or what GMP_OUTBOUND_ALLOW allows (SPEC section 13). The instance mailbox is
            # the admin's.
            policy=None if self.mailbox.tenant_id is None else self._d.settings.outbound_policy,
        )

    async def _poll_and_record(self, state: MailboxState) -> None:
        error: str | None = None
        try:
            await self._poll(state)
        except ImapError as exc:
            error = str(exc)[:500]
            log.warning("mailbox poll failed", extra={"mailbox": self.mailbox.key, "error": error})
        now = int(time.time())
        async with self._d.pool.acquire() as conn:
            await record_poll(
                conn, key=self.mailbox.key, owner=self._d.owner, now_ts=now, error=error
            )
        if error is None:
            self._d.metrics.mailbox_last_success.labels(self.mailbox.key, self.mailbox.kind).set(
                now
            )

    async def _poll(self, state: MailboxState) -> None:
        policy = self._d.policy()
        if policy is None:
            raise ImapError("bounce routing not loaded yet")
        async with ImapSession.open(self._target()) as imap:
            last_uid = state.last_uid
            if state.uidvalidity is not None and state.uidvalidity != imap.uidvalidity:
                log.warning(
                    "UIDVALIDITY changed: reading the folder again",
                    extra={"mailbox": self.mailbox.key},
                )
                last_uid = 0
            uids = (await imap.uids_after(last_uid))[: self._d.settings.inbound_max_per_poll]
            if state.uidvalidity != imap.uidvalidity and not uids:
                await self._advance(imap.uidvalidity, last_uid, Handled())
            for uid in uids:
                raw = await imap.fetch(uid)
                handled = await self._record(imap.uidvalidity, uid, raw, policy)
                if handled is None:
                    continue  # recorded before (by us or a previous holder)
                self._count(handled)
                await self._after(imap, uid)

    async def _advance(self, uidvalidity: int, uid: int, handled: Handled) -> None:
        async with self._d.pool.acquire() as conn, conn.transaction():
            if await lock_held(conn, key=self.mailbox.key, owner=self._d.owner) is None:
                raise LostLease
            await set_position(
                conn,
                key=self.mailbox.key,
                uidvalidity=uidvalidity,
                last_uid=uid,
                lease_seconds=self.lease_seconds,
            )

    async def _record(
        self, uidvalidity: int, uid: int, raw: bytes | None, policy: HandlerPolicy
    ) -> Handled | None:
        handled = Handled()
        async with self._d.pool.acquire() as conn, conn.transaction():
            held = await lock_held(conn, key=self.mailbox.key, owner=self._d.owner)
            if held is None:
                raise LostLease
            if held.uidvalidity == uidvalidity and held.last_uid >= uid:
                return None
            if raw is not None:
                handled = await self._handle(conn, uid, raw, policy)
            await set_position(
                conn,
                key=self.mailbox.key,
                uidvalidity=uidvalidity,
                last_uid=uid,
                lease_seconds=self.lease_seconds,
                uncorrelated=handled.uncorrelated,
            )
        return handled

    async def _handle(
        self, conn: asyncpg.Connection, uid: int, raw: bytes, policy: HandlerPolicy
    ) -> Handled:
        try:
            async with conn.transaction():  # a savepoint: a bad message rolls back alone
                return await self._handler(
                    conn, mailbox=self.mailbox, raw=raw, policy=policy, now_ts=int(time.time())
                )
        except Exception as exc:
            if isinstance(exc, DATABASE_ERRORS) and database_unavailable(exc):
                raise
            # Hostile or broken mail must not wedge the mailbox: log it and move on.
            log.error(
                "inbound message skipped",
                exc_info=True,
                extra={"mailbox": self.mailbox.key, "uid": uid, "error": type(exc).__name__},
            )
            return Handled()

    def _count(self, handled: Handled) -> None:
        m = self._d.metrics
        for tenant_id, bounce_type in handled.bounces:
            m.bounces.labels(tenant_id, bounce_type).inc()
        for kind in handled.pec:
            m.pec_events.labels(kind).inc()
        if handled.uncorrelated:
            m.bounces_uncorrelated.labels(self.mailbox.key).inc(handled.uncorrelated)
        if handled.events:
            self._d.on_events()

    async def _after(self, imap: ImapSession, uid: int) -> None:
        """The configured treatment of a processed message; failures only get logged."""
        action = self.mailbox.processed_action
        try:
            if action == "seen":
                await imap.mark_seen(uid)
            elif action == "move" and self.mailbox.processed_folder:
                await imap.move(uid, self.mailbox.processed_folder)
        except ImapError as exc:
            log.warning(
                "processed message not flagged/moved",
                extra={"mailbox": self.mailbox.key, "uid": uid, "error": str(exc)[:200]},
            )
