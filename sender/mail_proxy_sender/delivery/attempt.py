# SPDX-License-Identifier: Apache-2.0
"""One attempt at one message: attachments, MIME, SMTP, and the outcome to record.

Called by a lane worker with the connection it holds; returns the connection to keep using
(or None when it had to be dropped). Every path ends in exactly one recorded outcome, except a
job whose lease may have run out before it started: that one is left alone for whichever
sender now holds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mail_proxy import rendered
from mail_proxy.addresses import submitted_forms
from mail_proxy.db.bounce_routing import BounceRouting
from mail_proxy.encryption import SecretBox
from mail_proxy.errors import EncryptionError
from mail_proxy.intake import RECIPIENT_SUPPRESSED, SUPPRESSED_KEY
from mail_proxy.large_files.footer import with_footer
from mail_proxy.large_files.policy import LargeFilePolicy
from mail_proxy.metrics import Metrics
from mail_proxy.mime import AttachmentPart, MessageBuildError, WireMessage, build_message
from mail_proxy.redact import open_client_auth
from mail_proxy.states import MessageState
from mail_proxy_sender.attachments.fetch import AttachmentFetcher, TenantSource
from mail_proxy_sender.attachments.offload import MessageRef, Offloader
from mail_proxy_sender.delivery.domain_backoff import DomainBackoff
from mail_proxy_sender.delivery.exchange import RecipientLimits
from mail_proxy_sender.delivery.failures import (
    AccountFailure,
    DeliveryFailure,
    PermanentFailure,
    SessionEnded,
    TemporaryFailure,
    Throttled,
    TooManyConnections,
)
from mail_proxy_sender.delivery.lanes import Job
from mail_proxy_sender.delivery.lease_keeper import LeaseKeeper
from mail_proxy_sender.delivery.outcome_writer import OutcomeWriter, Recorded
from mail_proxy_sender.delivery.recipient_tally import RecipientTally
from mail_proxy_sender.delivery.retry import RetryPolicy
from mail_proxy_sender.delivery.smtp_client import SmtpConnection
from mail_proxy_sender.delivery.smtp_target import SmtpOptions, SmtpTarget
from mail_proxy_sender.delivery.transactions import TransactionLoop

log = logging.getLogger(__name__)
# Returned instead of a failure when the account was held: nothing to record for the message.
_HELD = TemporaryFailure("account held")
# Returned when the job went back to its lane to wait for a connection already open.
_REQUEUED = TemporaryFailure("requeued")
# New sessions per attempt beyond `smtp_reconnect_attempts`, each after a session ended at a
# recipient not suspected before (it is named last, alone, from then on): so a few recipients
# that end sessions cannot use up the reconnects the others need.
_MAX_ISOLATING = 5


async def _nothing_failed(job: Job, failure: AccountFailure) -> None:
    return None


async def _nothing_ok(job: Job) -> None:
    return None


class Deliverer:
    def __init__(
        self,
        *,
        fetcher: AttachmentFetcher,
        box: SecretBox,
        retry: Callable[[], RetryPolicy],
        writer: OutcomeWriter,
        keeper: LeaseKeeper,
        smtp_options: SmtpOptions,
        metrics: Metrics,
        on_throttled: Callable[[Job, bool], Awaitable[None]],
        on_too_many_connections: Callable[[Job], Awaitable[bool]],
        on_account_failure: Callable[[Job, AccountFailure], Awaitable[None]] = _nothing_failed,
        on_account_ok: Callable[[Job], Awaitable[None]] = _nothing_ok,
        routing: Callable[[], BounceRouting | None] = lambda: None,
        offloader: Offloader | None = None,
        domains: DomainBackoff | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._offloader = offloader
        self._box = box
        self._retry = retry
        self._writer = writer
        self._keeper = keeper
        self._options = smtp_options
        self._recipient_limits = RecipientLimits()  # learned per server, shared by sessions
        self._metrics = metrics
        self._on_throttled = on_throttled
        self._on_too_many_connections = on_too_many_connections
        self._on_account_failure = on_account_failure
        self._on_account_ok = on_account_ok
        self._routing = routing
        self._loop = TransactionLoop(domains or DomainBackoff(base_seconds=60.0, max_seconds=900.0))

    async def __call__(self, job: Job, conn: SmtpConnection | None) -> SmtpConnection | None:
        if not await self._keeper.startable(job.message.pk):
            log.warning(
                "lease lost or about to run out; leaving the message to be taken back",
                extra={"action": "lease_expired", "message_id": job.message.id},
            )
            self._keeper.drop([job.message.pk])
            return conn
        try:
            return await self._attempt(job, conn)
        except Exception as exc:
            # Whatever a message's content makes go wrong ends in an outcome for that message,
            # never in a lease retried for ever (issue 9): recorded as an error, with the cause.
            log.exception(
                "delivery crashed",
                extra={"action": "delivery_crash", "message_id": job.message.id},
            )
            await self._fail(
                job, PermanentFailure(f"Internal error while sending: {type(exc).__name__}")
            )
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            return None
        except BaseException:
            # A cancellation, not an outcome: stop renewing so the lease runs out and another
            # attempt takes the message back.
            self._keeper.drop([job.message.pk])
            raise

    async def _attempt(self, job: Job, conn: SmtpConnection | None) -> SmtpConnection | None:
        try:
            target, tenant = self._endpoints(job)
            wire = await self._prepare(job, tenant)
        except DeliveryFailure as failure:
            await self._fail(job, failure)
            return conn

        async def rebuild(omit: frozenset[str]) -> WireMessage:
            return await self._build(job, tenant, omit)

        payload = job.message.payload
        shown = submitted_forms(payload.get("to"), payload.get("cc"), payload.get("bcc"))
        tally = RecipientTally(
            wire.recipients, job.message.recipients, shown, attempt=job.message.attempts
        )
        suppressed = {str(a).lower() for a in job.message.payload.get(SUPPRESSED_KEY) or ()}
        for address in wire.recipients:
            if address.lower() in suppressed:
                # Left out at intake (suppression list): reported refused, never named.
                tally.refuse(address, RECIPIENT_SUPPRESSED)
        if tally.to_send():
            conn, whole = await self._deliver(job, target, conn, wire, rebuild, tally)
            if whole is _REQUEUED:
                return None  # the job waits for a connection already open
            if whole is not None:
                await self._fail(job, whole, wire)
                return conn
        outcome = tally.outcome(
            message_pk=job.message.pk,
            attempts=job.message.attempts,
            policy=self._retry(),
            now=time.time(),
        )
        if outcome.state == MessageState.DEFERRED:
            outcome = self._loop.after_domain_backoff(job.message.account_pk, tally, outcome)
        if outcome.state != MessageState.SENT:
            self._log_failure(job, outcome.state, outcome.error or "")
        if outcome.state == MessageState.DEFERRED and job.message.rendered is None:
            # Built once: the retry sends these bytes to the deferred recipients.
            outcome = dataclasses.replace(outcome, rendered=rendered.pack(wire))
        self._writer.put(Recorded(outcome, job.labels, job.message.created_ts))
        return conn

    async def _deliver(
        self,
        job: Job,
        target: SmtpTarget,
        conn: SmtpConnection | None,
        wire: WireMessage,
        rebuild: Callable[[frozenset[str]], Awaitable[WireMessage]],
        tally: RecipientTally,
    ) -> tuple[SmtpConnection | None, DeliveryFailure | None]:
        """Name every unsettled recipient, over as many transactions and sessions as it takes
        (452: another transaction at once; 421/dropped: a new session, at most
        `smtp_reconnect_attempts` times). Returns the connection worth keeping, and a failure
        when it belongs to the whole message (nobody settled: reported as before)."""
        reconnects = 0
        isolating = 0  # new sessions that each found one more recipient ending them
        while True:
            try:
                conn = await self._session(job, target, conn)
            except DeliveryFailure as failure:
                if tally.fates:
                    # Some recipients were settled on a session that ended: theirs is kept,
                    # the others wait for a retry, without being blamed for it.
                    tally.defer(tally.to_send(), failure)
                    return None, None
                if isinstance(failure, TooManyConnections) and await self._on_too_many_connections(
                    job
                ):
                    return None, _REQUEUED
                if isinstance(failure, Throttled):
                    # Refused before MAIL (421 greeting): the message was not tried. The
                    # account rests; the message waits without an attempt counted, so a relay
                    # in maintenance for hours never uses up anybody's retries.
                    await self._on_throttled(job, True)
                    return None, _HELD
                if isinstance(failure, AccountFailure):
                    await self._on_account_failure(job, failure)
                    return None, _HELD
                return None, failure
            if wire.smtputf8 and not conn.smtputf8:
                try:
                    wire = await self._loop.without_smtputf8(wire, rebuild, tally)
                except DeliveryFailure as failure:
                    return conn, failure
                if not tally.to_send():
                    return conn, None
            started = time.perf_counter()
            known = len(tally.suspects)
            ended = await self._loop.run(conn, wire, tally, job.message.account_pk)
            if ended is None:
                self._metrics.smtp_latency.labels(job.account["id"]).observe(
                    time.perf_counter() - started
                )
                return conn, None
            if not conn.usable(target) or isinstance(ended, SessionEnded):
                await conn.close()
                conn = None
            if isinstance(ended, SessionEnded):
                if len(tally.suspects) > known and isolating < _MAX_ISOLATING:
                    isolating += 1  # it ended at a recipient not suspected yet: set it aside
                    continue
                if (
                    reconnects < self._options.reconnect_attempts
                    and not tally.only_proven_suspects_left
                ):
                    reconnects += 1  # not the message's fault: carry on with a new session
                    continue
            if not tally.fates and not job.message.recipients and not tally.suspects:
                return conn, ended  # nobody settled: the message's failure, as before
            if isinstance(ended, Throttled):
                await self._on_throttled(job, False)
            tally.defer(tally.to_send(), ended)
            return conn, None

    async def _session(
        self, job: Job, target: SmtpTarget, conn: SmtpConnection | None
    ) -> SmtpConnection:
        """The kept connection when still good, else a new one (opening it marks a held
        account healthy again)."""
        if conn is not None and conn.usable(target):
            return conn
        if conn is not None:
            await conn.close()
        conn = await self._open(target)
        if job.account.get("health") != "ok":
            await self._on_account_ok(job)
        return conn

    def _endpoints(self, job: Job) -> tuple[SmtpTarget, TenantSource]:
        """The SMTP target and the tenant's attachment source, with secrets decrypted."""
        account = job.account
        try:
            target = SmtpTarget.of_account(account, self._box)
            auth = open_client_auth(self._box, account["client_auth"])
        except EncryptionError as exc:
            # A key problem is the deployment's, not the message's: retried, not failed.
            raise TemporaryFailure(f"Cannot read the stored credentials: {exc}") from exc
        tenant = TenantSource(account["client_base_url"], account["client_attachment_path"], auth)
        return target, tenant

    def _opened(self, attachment: dict[str, Any]) -> dict[str, Any]:
        """An attachment with its own stored `auth` decrypted (the API stores it sealed)."""
        if not attachment.get("auth"):
            return attachment
        try:
            return {**attachment, "auth": open_client_auth(self._box, attachment["auth"])}
        except EncryptionError as exc:
            raise TemporaryFailure(f"Cannot read the attachment credentials: {exc}") from exc

    async def _prepare(self, job: Job, tenant: TenantSource) -> WireMessage:
        """The message to send: as an earlier attempt built it, else built now."""
        if job.message.rendered is not None:
            try:
                return rendered.unpack(job.message.rendered)
            except rendered.RenderedFormatError:
                log.warning(
                    "stored message unreadable; building it again",
                    extra={"action": "rendered_invalid", "message_id": job.message.id},
                )
        return await self._build(job, tenant)

    async def _build(
        self, job: Job, tenant: TenantSource, omit: frozenset[str] = frozenset()
    ) -> WireMessage:
        """Fetch the attachments and build the message; `omit` leaves those recipients out of
        the headers (the copy for a server without SMTPUTF8)."""
        attachments = [self._opened(a) for a in job.message.payload.get("attachments") or ()]
        parts, payload = await self._attachments(job, tenant, attachments)
        routing = self._routing()
        token = routing.token(job.message.pk) if routing is not None else None
        try:
            wire = build_message(
                payload,
                parts,
                tenant_id=job.message.tenant_id,
                message_pk=job.message.pk,
                correlation_token=token,
                default_return_path=(
                    routing.envelope_sender(job.message.tenant_id, token)
                    if routing is not None and token is not None
                    else None
                ),
                omit_from_headers=omit,
            )
        except MessageBuildError as exc:
            raise PermanentFailure(str(exc)) from exc
        return wire

    async def _attachments(
        self, job: Job, tenant: TenantSource, attachments: list[dict[str, Any]]
    ) -> tuple[list[AttachmentPart], Mapping[str, Any]]:
        """The parts to attach and the payload to build from (with the large-file footer)."""
        payload = job.message.payload
        if not attachments:
            return [], payload
        policy = self._large_file_policy(job)
        if policy is None or self._offloader is None:
            return await self._fetcher.fetch_all(attachments, tenant), payload
        message = MessageRef(job.message.tenant_id, job.message.pk, job.message.id)
        prepared = await self._offloader.prepare(attachments, tenant, policy, message)
        return prepared.parts, with_footer(payload, prepared.links)

    @staticmethod
    def _large_file_policy(job: Job) -> LargeFilePolicy | None:
        try:
            return LargeFilePolicy.from_config(job.account["large_file_config"])
        except (ValueError, TypeError) as exc:
            log.error(
                "unusable large_file_config; attachments are sent normally",
                extra={
                    "action": "large_file_config_invalid",
                    "tenant_id": job.message.tenant_id,
                    "reason": str(exc),
                },
            )
            return None

    async def _open(self, target: SmtpTarget) -> SmtpConnection:
        conn = SmtpConnection(target, self._options, self._recipient_limits)
        try:
            await conn.open()
        except Throttled as failure:
            if failure.smtp_code == 421:
                raise TooManyConnections(failure.reason, smtp_code=421) from failure
            raise
        return conn

    async def _fail(
        self, job: Job, failure: DeliveryFailure, wire: WireMessage | None = None
    ) -> None:
        if failure is _HELD:
            return  # the account is held: its messages went back to the queue
        # Built per failure: the retry settings may change while the sender runs.
        outcome = self._retry().outcome(
            message_pk=job.message.pk,
            attempts=job.message.attempts,
            failure=failure,
            now=time.time(),
        )
        if (
            outcome.state == MessageState.DEFERRED
            and wire is not None
            and job.message.rendered is None
        ):
            # Built once: the retry sends these bytes, without fetching or building again.
            outcome = dataclasses.replace(outcome, rendered=rendered.pack(wire))
        self._log_failure(job, outcome.state, failure.described)
        self._writer.put(Recorded(outcome, job.labels, job.message.created_ts))
        if isinstance(failure, Throttled):
            await self._on_throttled(job, False)

    @staticmethod
    def _log_failure(job: Job, state: str, reason: str) -> None:
        log.info(
            "delivery failed",
            extra={
                "action": state,
                "message_id": job.message.id,
                "tenant_id": job.message.tenant_id,
                "account_id": job.account["id"],
                "reason": reason,
            },
        )
