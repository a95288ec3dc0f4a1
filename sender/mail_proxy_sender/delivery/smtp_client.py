# SPDX-License-Identifier: Apache-2.0
"""One SMTP connection to an account's server, with the account's TLS mode (`smtp_target`)
and credentials. Failures leave as `DeliveryFailure` types (see `failures`): opening a session
fails with the account's failure, a transaction reports each recipient's answer.

The account's host is chosen by a tenant, so it is vetted like every destination reached on a
tenant's behalf (`mail_proxy_sender.outbound.destinations`, SPEC section 13): resolved once, every
address judged by the outbound policy (public only, plus `GMP_OUTBOUND_ALLOW`), and the socket
opened to a vetted address, never to the name again (no DNS-rebinding window). TLS still uses
the host name for SNI and certificate verification. A refused host is the account's failure with
one fixed reason; what it resolved to is only in the server log.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from functools import lru_cache

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.typing import SMTPStatus

from mail_proxy.errors import DestinationRefused
from mail_proxy_sender.delivery.exchange import (
    Exchange,
    Pipelined,
    RecipientLimits,
    Sequential,
    Server,
)
from mail_proxy_sender.delivery.failures import (
    AccountFailure,
    DeliveryFailure,
    SessionEnded,
    TemporaryFailure,
    Throttled,
    classify_connect_error,
    classify_smtp_error,
)
from mail_proxy_sender.delivery.rcpt_answers import Answer, RcptOutcome, rcpt_outcome
from mail_proxy_sender.delivery.replies import OutOfStep
from mail_proxy_sender.delivery.smtp_target import SmtpOptions, SmtpTarget, TlsMode, tls_context
from mail_proxy_sender.outbound.destinations import (
    Unresolvable,
    connect_socket,
    vetted_addresses,
)


@lru_cache(maxsize=4096)
def _quoted(address: str) -> str:
    """`<address>` for MAIL/RCPT with aiosmtplib's own check against command injection
    (`quote_address`), done once per address: it parses the address every time, a measurable
    share of a sender's CPU per message."""
    return quote_address(address)


@dataclass
class TransactionResult:
    """One MAIL/RCPT/DATA transaction. `answers` per recipient answered; `ended` when the
    session ended under it (421, hang-up, timeout); `untried` got no answer of their own: not
    named (after a too-many-recipients answer, or after the session ended), or accepted at RCPT
    when the session ended before the end of DATA."""

    answers: dict[str, Answer]
    untried: list[str]
    ended: DeliveryFailure | None = None
    # The server refused the message itself (at MAIL or DATA): the same answer for everybody.
    refused_message: DeliveryFailure | None = None
    # The recipient whose RCPT the session ended at, with the answer when there was one (421).
    ended_at: Answer | None = None
    ended_at_address: str | None = None


@dataclass(frozen=True)
class _Commands:
    """A transaction's MAIL and RCPT words (`exchange.Commands`), quoted by `_quoted`."""

    sender: str
    addresses: list[str]
    options: list[str]
    encoding: str

    @property
    def recipients(self) -> int:
        return len(self.addresses)

    def mail(self) -> list[bytes]:
        words = [b"MAIL", b"FROM:" + _quoted(self.sender).encode(self.encoding)]
        return words + [option.encode("ascii") for option in self.options]

    def rcpt(self, index: int) -> list[bytes]:
        return [b"RCPT", b"TO:" + _quoted(self.addresses[index]).encode(self.encoding)]


class SmtpConnection:
    """A connected, logged-in client; `send` delivers one message on it."""

    def __init__(
        self, target: SmtpTarget, options: SmtpOptions, limits: RecipientLimits | None = None
    ) -> None:
        self.target = target
        self._options = options
        self._limits = limits or RecipientLimits()
        mode = target.tls_mode(options.implicit_tls_ports)
        # Connected through a socket opened to a vetted address (`open`); the host name stays
        # for TLS (SNI, certificate check) and for errors.
        self._client = aiosmtplib.SMTP(
            hostname=target.host,
            local_hostname=options.local_hostname,
            timeout=options.timeout_seconds,
            use_tls=mode is TlsMode.IMPLICIT,
            start_tls={TlsMode.STARTTLS: True, TlsMode.OPPORTUNISTIC: None}.get(mode, False),
            tls_context=tls_context(target.tls_verify, options.ca_file)
            if mode is not TlsMode.NONE
            else None,
        )
        self.opened_at = 0.0
        self.sends = 0
        self.transactions = 0  # MAIL commands on this session

    async def open(self) -> None:
        """Connect, negotiate TLS and log in; raises the account's `DeliveryFailure`
        (`AccountFailure` with what to fix, or `Throttled` for a 421 greeting)."""
        sock = await self._vetted_socket()
        try:
            await self._client.connect(sock=sock)
            if self._client.is_ehlo_or_helo_needed:
                # EHLO now (connect only does it for STARTTLS/AUTH): the extensions decide
                # how a message goes (SMTPUTF8, SIZE).
                try:
                    await self._client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await self._client.helo()
            if self.target.username and self.target.password:
                await self._client.login(self.target.username, self.target.password)
        except Exception as exc:
            self._client.close()
            sock.close()
            raise classify_connect_error(exc, host=self.target.host, port=self.target.port) from exc
        self.opened_at = time.monotonic()

    async def _vetted_socket(self) -> socket.socket:
        """A TCP socket connected to an address of the account's host that the policy allows."""
        timeout = self._options.timeout_seconds
        try:
            addresses = await vetted_addresses(
                self._options.policy,
                self.target.host,
                self.target.port,
                resolver=self._options.resolver,
                timeout_seconds=timeout,
                purpose="smtp",
            )
        except (DestinationRefused, Unresolvable) as exc:
            raise AccountFailure(f"SMTP host {exc}") from exc
        try:
            return await connect_socket(addresses, self.target.port, timeout_seconds=timeout)
        except (OSError, TimeoutError) as exc:
            raise classify_connect_error(exc, host=self.target.host, port=self.target.port) from exc

    @property
    def _server(self) -> Server:
        return self.target.host, self.target.port, self.target.username

    @property
    def smtputf8(self) -> bool:
        """The server offers SMTPUTF8 (RFC 6531)."""
        return self._client.supports_extension("smtputf8")

    async def transaction(
        self, *, sender: str, recipients: list[str], data: bytes, smtputf8: bool
    ) -> TransactionResult:
        """MAIL FROM, one RCPT TO per recipient, DATA when any was accepted (RFC 5321 3.3),
        pipelined when the server offers it (RFC 2920, see `exchange`).

        Every recipient named gets its own answer; a 421, a hang-up or a timeout ends the
        transaction with `ended` set, the recipients without an answer in `untried` and, when
        it ended at a RCPT, that recipient in `ended_at_address`. Replies out of step with a
        pipelined group (`replies.OutOfStep`) answer nobody: every recipient is untried.
        """
        self.transactions += 1
        exchange = self._exchange(sender, recipients, len(data), smtputf8)
        try:
            return await self._transaction(exchange, recipients, data)
        except OutOfStep as exc:  # raised only when no reply read can be kept
            return TransactionResult({}, list(recipients), self._ended(exc))
        finally:
            exchange.finish()

    def _exchange(self, sender: str, recipients: list[str], size: int, smtputf8: bool) -> Exchange:
        """How this transaction's commands go (see `exchange`)."""
        options = []
        if self._client.supports_extension("size"):
            options.append(f"SIZE={size}")
        if smtputf8:
            options.append("SMTPUTF8")
            if self._client.supports_extension("8bitmime"):
                options.append("BODY=8BITMIME")
        commands = _Commands(sender, recipients, options, "utf-8" if smtputf8 else "ascii")
        if (
            self._client.supports_extension("pipelining")
            and self._limits.pipelines(self._server, len(recipients))
            and (group := Pipelined.group(commands)) is not None
        ):
            try:
                return Pipelined(
                    self._client,
                    group,
                    self._options.timeout_seconds,
                    self._options.data_timeout_seconds,
                )
            except aiosmtplib.SMTPServerDisconnected:
                pass  # one command at a time finds the session closed as it always has
        return Sequential(self._client, commands, self._options.data_timeout_seconds)

    async def _transaction(
        self, exchange: Exchange, recipients: list[str], data: bytes
    ) -> TransactionResult:
        answers: dict[str, Answer] = {}
        try:
            response = await exchange.mail()
            if response.code != SMTPStatus.completed:
                raise aiosmtplib.SMTPResponseException(response.code, response.message)
        except aiosmtplib.SMTPResponseException as exc:
            failure = classify_smtp_error(exc)
            if isinstance(failure, SessionEnded) or not self._client.is_connected:
                return TransactionResult({}, list(recipients), failure)
            await self._reset(exchange)
            return TransactionResult(
                {r: Answer(exc.code, exc.message, "mail") for r in recipients},
                [],
                refused_message=failure,
            )
        except Exception as exc:
            return TransactionResult({}, list(recipients), self._ended(exc))
        accepted: list[str] = []
        unnamed: list[str] = []
        past_limit = False  # a "too many recipients" answer came: the rest are not answered
        for index, address in enumerate(recipients):
            try:
                response = await exchange.rcpt(index)
                if response.code not in (SMTPStatus.completed, SMTPStatus.will_forward):
                    raise aiosmtplib.SMTPResponseException(response.code, response.message)
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code == 421 or not self._client.is_connected:
                    return TransactionResult(
                        answers,
                        accepted + unnamed + recipients[index:],
                        self._ended(exc),
                        # Past the limit in a pipelined group the server ends the session
                        # for the errors we made, not for this recipient (no suspect).
                        ended_at=None if past_limit else Answer(exc.code, exc.message, "rcpt"),
                        ended_at_address=None if past_limit else address,
                    )
                if past_limit:
                    # Pipelined past the limit (RFC 2920): what a server says about those is
                    # not their own answer; they go in the next transaction.
                    unnamed.append(address)
                    continue
                answers[address] = answer = Answer(exc.code, exc.message, "rcpt")
                if rcpt_outcome(answer) is RcptOutcome.TOO_MANY:
                    # The limit is reached: the rest wait for the next transaction (RFC 5321
                    # 4.5.3.1.10), not named to collect one more error each (servers hang up
                    # after a few, e.g. Postfix's smtpd_hard_error_limit) unless they already
                    # were in a pipelined group, whose replies are read to stay in step.
                    past_limit = True
                    if self.transactions == 1:
                        self._limits.learn(self._server, len(accepted))
                    if isinstance(exchange, Sequential):
                        unnamed = recipients[index + 1 :]
                        break
                continue
            except Exception as exc:
                # Hang-up or timeout at this RCPT: nobody's answer, the session is over.
                if isinstance(exc, OutOfStep) and exc.answers_void:
                    # Nobody's answer in this transaction holds; one command at a time, the
                    # reply came to this recipient's command: it is named alone next time.
                    sequential = isinstance(exchange, Sequential) and not past_limit
                    return TransactionResult(
                        {},
                        list(recipients),
                        self._ended(exc),
                        ended_at_address=address if sequential else None,
                    )
                return TransactionResult(
                    answers,
                    accepted + unnamed + recipients[index:],
                    self._ended(exc),
                    ended_at_address=None if past_limit else address,
                )
            accepted.append(address)
        if not accepted:
            await self._reset(exchange)
            return TransactionResult(answers, unnamed)
        try:
            response = await exchange.data(data)
        except aiosmtplib.SMTPResponseException as exc:
            failure = classify_smtp_error(exc)
            if exc.code == 421 or not self._client.is_connected:
                return TransactionResult(answers, accepted + unnamed, failure)
            await self._reset(exchange)
            answers.update({r: Answer(exc.code, exc.message, "data") for r in accepted})
            return TransactionResult(answers, unnamed, refused_message=failure)
        except Exception as exc:
            # Lost during DATA: whether the server kept it is unknown; tried again, as before.
            if isinstance(exc, OutOfStep) and exc.answers_void:
                raise
            return TransactionResult(answers, accepted + unnamed, classify_smtp_error(exc))
        if not past_limit:
            self._limits.took(self._server, len(recipients))
        self.sends += 1
        answers.update({r: Answer(response.code, response.message, "data") for r in accepted})
        return TransactionResult(answers, unnamed)

    def _ended(self, exc: BaseException) -> DeliveryFailure:
        """The failure of an exception at MAIL or RCPT: `SessionEnded` when it left the session
        closed (hang-up, timeout: aiosmtplib closes on both), so that a new session carries on
        without blaming the message or any recipient; a rate limit stays `Throttled`."""
        failure = classify_smtp_error(exc)
        if self._client.is_connected or isinstance(failure, SessionEnded | Throttled):
            return failure
        if isinstance(failure, TemporaryFailure):
            return SessionEnded(failure.reason, smtp_code=failure.smtp_code)
        return failure

    async def _reset(self, exchange: Exchange) -> None:
        """RSET after a transaction that sent no message (RFC 5321 4.1.1.5)."""
        await exchange.abandon()
        exchange.finish()
        if not self._client.is_connected:
            return
        try:
            await self._client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._client.close()
        except asyncio.CancelledError:
            self._client.close()  # RSET's reply, owed, would be taken for the next command's
            raise

    def usable(self, target: SmtpTarget) -> bool:
        """Still connected, for the same target, and younger than the account's `ttl`."""
        return (
            self._client.is_connected
            and target == self.target
            and time.monotonic() - self.opened_at < self.target.max_age_seconds
        )

    async def close(self) -> None:
        if not self._client.is_connected:
            return
        try:
            await self._client.quit(timeout=5)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._client.close()
