# SPDX-License-Identifier: Apache-2.0
"""Why a delivery attempt failed, as a type: retry it later, or give up.

    DeliveryFailure (MailProxyError)
    ├── TemporaryFailure      retry with the delay table: SMTP 4xx, timeouts, attachment
    │   │                     sources that failed other than with a 4xx
    │   ├── Throttled         the server named a rate or connection limit (421, or 4.7.x
    │   │   │                 at connect/MAIL/DATA): back the whole account off for a while
    │   │   └── TooManyConnections  421 while opening a connection: the server limits how
    │   │                     many we hold; the account's connection cap drops for a while
    │   ├── SessionEnded      421 or a dropped connection mid-session: not the message's
    │   │                     fault; reconnect and carry on at once (bounded)
    │   └── AccountFailure    the account cannot open a session (TLS verification, 535
    │                         authentication, connection refused, DNS, STARTTLS missing):
    │                         hold the account's queue and probe it with back-off (issue 10 item 5)
    └── PermanentFailure      give up now: SMTP 5xx for the message, a payload that cannot
                              become a message, an attachment source answering 4xx

Recipient-level answers (RCPT) are not failures of the message: see `transaction`.

Library errors (aiosmtplib, ssl, httpx) are turned into these where they enter, with the cause
chained. The reply *text* is read only to tell a rate limit from other 421/4xx answers, since
servers say "rate" or "too many connections" in words (RFC 3463 has no code for it).
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl

import aiosmtplib

from mail_proxy.errors import MailProxyError

# "Too many errors" (Postfix's smtpd_hard_error_limit) or "too many recipients" (a recipient
# limit, see rcpt_answers) name no rate: they end a session or a transaction, nothing more.
_RATE_WORDS = re.compile(
    r"\brate\b|too many(?!\s+(errors|recipients|bad|invalid|unknown|failed))|limit|throttl"
    r"|slow down|connections",
    re.I,
)
_POLICY_CODE = re.compile(r"^\s*4\.7\.\d{1,3}\b")


class DeliveryFailure(MailProxyError):
    """An attempt failed; `reason` is what the client is told, `smtp_code` when there was one."""

    def __init__(self, reason: str, *, smtp_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.smtp_code = smtp_code

    @property
    def described(self) -> str:
        """The reason as reported: with ` (SMTP <code>)` when the server gave a code."""
        return f"{self.reason} (SMTP {self.smtp_code})" if self.smtp_code else self.reason


class TemporaryFailure(DeliveryFailure):
    """Worth another attempt later."""


class Throttled(TemporaryFailure):
    """The server asked us to slow down: back the account off."""


class TooManyConnections(Throttled):
    """421 at connect time (greeting, EHLO, AUTH): fewer connections, not fewer messages."""


class SessionEnded(TemporaryFailure):
    """The session ended under the message (421, connection dropped): try again at once on a
    new connection; the message is not to blame."""


class AccountFailure(TemporaryFailure):
    """The account cannot open a session; `reason` says what to fix. Holds the account."""


class PermanentFailure(DeliveryFailure):
    """Another attempt would fail the same way."""


def names_rate_limit(code: int, text: str) -> bool:
    """A 4xx answer naming a rate or connection limit: 421, or an RFC 3463 4.7.x policy code,
    whose text says so ("too many connections", "rate limit exceeded", "slow down").
    Greylisting (`451 4.7.1 try again later`) is not one."""
    if not (code == 421 or (400 <= code < 500 and _POLICY_CODE.match(text))):
        return False
    return bool(_RATE_WORDS.search(text))


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _by_code(code: int, text: str) -> DeliveryFailure:
    """A message-level answer (MAIL or DATA)."""
    if code == 421:
        if names_rate_limit(code, text):
            return Throttled(text, smtp_code=code)
        return SessionEnded(text, smtp_code=code)
    if 400 <= code < 500:
        if names_rate_limit(code, text):
            return Throttled(text, smtp_code=code)
        return TemporaryFailure(text, smtp_code=code)
    return PermanentFailure(text, smtp_code=code)


def classify_smtp_error(exc: BaseException) -> DeliveryFailure:
    """The failure type of an exception raised while talking SMTP in an open session."""
    if isinstance(exc, DeliveryFailure):
        return exc
    tls = _tls_cause(exc)
    if tls is not None:
        return PermanentFailure(f"TLS failure: {getattr(tls, 'reason', None) or tls}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return PermanentFailure(f"Not supported by the server: {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError | TimeoutError):
        return TemporaryFailure(f"Timeout: {exc}" if str(exc) else "Timeout")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError):
        return SessionEnded(str(exc) or "Connection lost")
    if isinstance(exc, aiosmtplib.SMTPException):
        return PermanentFailure(exc.message)
    if isinstance(exc, ConnectionError | OSError):
        return SessionEnded(f"Connection error: {exc}")
    return TemporaryFailure(f"{type(exc).__name__}: {exc}")


def classify_connect_error(exc: BaseException, *, host: str, port: int) -> DeliveryFailure:
    """The failure of opening a session (connect, TLS, EHLO, AUTH): the account's, with a reason
    that says what to do, except a server that asks us to come back later (421 at connect)."""
    where = f"{host}:{port}"
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 421:
        return Throttled(f"{where} refused the session: {exc.message}", smtp_code=421)
    tls = _tls_cause(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        detail = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or tls
        if "hostname" in str(detail).lower() or "match" in str(detail).lower():
            return AccountFailure(
                f"certificate of {where} does not match the host name ({detail}): "
                "use the name on the certificate as host, or set tls_verify false"
            )
        return AccountFailure(
            f"certificate of {where} not trusted ({detail}): set tls_verify false on the "
            "account or add its CA with GMP_SMTP_CA_FILE"
        )
    if tls is not None:
        return AccountFailure(
            f"TLS handshake with {where} failed ({getattr(tls, 'reason', None) or tls}): "
            "check use_tls and the port (465 implicit TLS, 587 STARTTLS)"
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return AccountFailure(
            f"authentication failed at {where} ({exc.code} {exc.message}): "
            "check the account's user and password",
            smtp_code=exc.code,
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"{where} refused the session ({exc.code} {exc.message})"
        if 400 <= exc.code < 500:
            return AccountFailure(text, smtp_code=exc.code)
        return AccountFailure(f"{text}: check the account's settings", smtp_code=exc.code)
    if _cause(exc, socket.gaierror) is not None:
        return AccountFailure(f"host name {host!r} not found (DNS): check the account's host")
    if _cause(exc, ConnectionRefusedError) is not None:
        return AccountFailure(f"connection refused by {where}: check the host and port")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError | TimeoutError):
        return AccountFailure(f"no answer from {where} in time: check host, port and firewall")
    if isinstance(exc, aiosmtplib.SMTPException) and "AUTH EXTENSION" in str(exc).upper():
        # aiosmtplib's login() on a session without AUTH: before the STARTTLS check below,
        # since its message may suggest STARTTLS too.
        return AccountFailure(
            f"{where} offers no login (AUTH) on this session, and the account has a user and "
            "password: if the server wants TLS first, use its TLS port or set use_tls true; "
            "else check the server or remove the credentials"
        )
    if isinstance(exc, aiosmtplib.SMTPException) and "STARTTLS" in str(exc).upper():
        return AccountFailure(
            f"{where} does not offer STARTTLS, which the account requires (use_tls true): "
            "check the port or the server"
        )
    if isinstance(exc, aiosmtplib.SMTPException | ConnectionError | OSError):
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return AccountFailure(f"cannot open a session with {where}: {message}")
    return TemporaryFailure(f"{type(exc).__name__}: {exc}")
