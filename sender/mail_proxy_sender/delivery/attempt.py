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
from mail_proxy.db.bounce_routing import BounceRouting
from mail_proxy.db.outcomes import Outcome
from mail_proxy.encryption import SecretBox
from mail_proxy.errors import EncryptionError
from mail_proxy.intake import RECIPIENT_SUPPRESSED, SUPPRESSED_KEY
from mail_proxy.large_files.footer import with_footer
from mail_proxy.large_files.policy import LargeFilePolicy
from mail_proxy.metrics import Metrics
from mail_proxy.mime import AttachmentPart, MessageBuildError, WireMessage, build_message
from mail_proxy.redact import open_client_auth
from mail_proxy_sender.attachments.fetch import AttachmentFetcher, TenantSource
from mail_proxy_sender.attachments.offload import MessageRef, Offloader
from mail_proxy_sender.delivery.failures import (
    DeliveryFailure,
    PermanentFailure,
    TemporaryFailure,
    Throttled,
    TooManyConnections,
)
from mail_proxy_sender.delivery.lanes import Job
from mail_proxy_sender.delivery.lease_keeper import LeaseKeeper
from mail_proxy_sender.delivery.outcome_writer import OutcomeWriter, Recorded
from mail_proxy_sender.delivery.retry import RetryPolicy
from mail_proxy_sender.delivery.smtp_client import SmtpConnection, SmtpOptions, SmtpTarget

log = logging.getLogger(__name__)


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
        on_throttled: Callable[[Job], Awaitable[None]],
        on_too_many_connections: Callable[[Job], Awaitable[bool]],
        routing: Callable[[], BounceRouting | None] = lambda: None,
        offloader: Offloader | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._offloader = offloader
        self._box = box
        self._retry = retry
        self._writer = writer
        self._keeper = keeper
        self._options = smtp_options
        self._metrics = metrics
        self._on_throttled = on_throttled
        self._on_too_many_connections = on_too_many_connections
        self._routing = routing

    async def __call__(self, job: Job, conn: SmtpConnection | None) -> SmtpConnection | None:
        if not self._keeper.may_start(job.message.pk):
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
        conn, result = await self._send(job, target, conn, wire)
        if isinstance(result, TooManyConnections) and await self._on_too_many_connections(job):
            return None  # the job waits for a connection already open
        if isinstance(result, DeliveryFailure):
            await self._fail(job, result, wire)
            return conn
        suppressed = job.message.payload.get(SUPPRESSED_KEY)
        if suppressed:
            # Left out at intake (suppression list): reported refused, like an SMTP refusal.
            result = {**dict.fromkeys(suppressed, RECIPIENT_SUPPRESSED), **result}
        now = time.time()
        outcome = Outcome(
            job.message.pk,
            "sent",
            int(now),
            sent_at=now,
            metadata={"refused": result} if result else None,
        )
        self._writer.put(Recorded(outcome, job.labels, job.message.created_ts))
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

    async def _build(self, job: Job, tenant: TenantSource) -> WireMessage:
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
            )
        except MessageBuildError as exc:
            raise PermanentFailure(str(exc)) from exc
        suppressed = payload.get(SUPPRESSED_KEY)
        if suppressed:
            left_out = {str(address).lower() for address in suppressed}
            recipients = [r for r in wire.recipients if r.lower() not in left_out]
            if not recipients:
                raise PermanentFailure(RECIPIENT_SUPPRESSED)
            wire = dataclasses.replace(wire, recipients=recipients)
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

    async def _send(
        self, job: Job, target: SmtpTarget, conn: SmtpConnection | None, wire: WireMessage
    ) -> tuple[SmtpConnection | None, dict[str, str] | DeliveryFailure]:
        """Send on the kept connection (or a new one); returns the connection worth keeping
        and the refused recipients, or the failure."""
        reused = conn is not None and conn.usable(target)
        if conn is not None and not reused:
            await conn.close()
            conn = None
        try:
            if conn is None:
                conn = await self._open(target)
            started = time.perf_counter()
            try:
                refused = await conn.send(wire)
            except DeliveryFailure as failure:
                if not (reused and failure.smtp_code is None):
                    raise
                # A kept connection that died while idle is not the message's fault.
                await conn.close()
                conn = None
                conn = await self._open(target)
                started = time.perf_counter()
                refused = await conn.send(wire)
        except DeliveryFailure as failure:
            return await self._worth_keeping(conn, failure), failure
        self._metrics.smtp_latency.labels(job.account["id"]).observe(time.perf_counter() - started)
        return conn, refused

    async def _open(self, target: SmtpTarget) -> SmtpConnection:
        conn = SmtpConnection(target, self._options)
        try:
            await conn.open()
        except Throttled as failure:
            if failure.smtp_code == 421:
                raise TooManyConnections(failure.reason, smtp_code=421) from failure
            raise
        return conn

    @staticmethod
    async def _worth_keeping(
        conn: SmtpConnection | None, failure: DeliveryFailure
    ) -> SmtpConnection | None:
        """A connection that answered with a code had its session reset: keep it."""
        if conn is None or (failure.smtp_code is not None and conn.usable(conn.target)):
            return conn
        await conn.close()
        return None

    async def _fail(
        self, job: Job, failure: DeliveryFailure, wire: WireMessage | None = None
    ) -> None:
        # Built per failure: the retry settings may change while the sender runs.
        outcome = self._retry().outcome(
            message_pk=job.message.pk,
            attempts=job.message.attempts,
            failure=failure,
            now=time.time(),
        )
        if outcome.state == "deferred" and wire is not None and job.message.rendered is None:
            # Built once: the retry sends these bytes, without fetching or building again.
            outcome = dataclasses.replace(outcome, rendered=rendered.pack(wire))
        log.info(
            "delivery failed",
            extra={
                "action": outcome.state,
                "message_id": job.message.id,
                "tenant_id": job.message.tenant_id,
                "account_id": job.account["id"],
                "reason": failure.described,
            },
        )
        self._writer.put(Recorded(outcome, job.labels, job.message.created_ts))
        if isinstance(failure, Throttled):
            await self._on_throttled(job)
