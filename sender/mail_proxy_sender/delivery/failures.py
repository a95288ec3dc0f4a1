# SPDX-License-Identifier: Apache-2.0
"""Why a delivery attempt failed, as a type: retry it later, or give up.

    DeliveryFailure (MailProxyError)
    ├── TemporaryFailure      retry with the delay table: SMTP 4xx, timeouts, connection errors,
    │   │                     attachment sources that failed other than with a 4xx
    │   └── Throttled         SMTP 421/451: also slow the whole account down for a while
    │       └── TooManyConnections  421 while opening a connection: the server limits how
    │                         many we hold; the account's connection cap drops for a while
    └── PermanentFailure      give up now: SMTP 5xx, authentication, TLS/certificates, a payload
                              that cannot become a message, an attachment source answering 4xx

Library errors (aiosmtplib, ssl, httpx) are turned into these where they enter, with the cause
chained; nothing downstream looks at message text to decide.
"""

from __future__ import annotations

import asyncio
import ssl

import aiosmtplib

from mail_proxy.errors import MailProxyError

THROTTLE_CODES = frozenset({421, 451})


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
    """The server asked us to slow down (421/451)."""


class TooManyConnections(Throttled):
    """421 at connect time (greeting, EHLO, AUTH): fewer connections, not fewer messages."""


class PermanentFailure(DeliveryFailure):
    """Another attempt would fail the same way."""


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _by_code(code: int, text: str) -> DeliveryFailure:
    if code in THROTTLE_CODES:
        return Throttled(text, smtp_code=code)
    if 400 <= code < 500:
        return TemporaryFailure(text, smtp_code=code)
    return PermanentFailure(text, smtp_code=code)


def classify_smtp_error(exc: BaseException) -> DeliveryFailure:
    """The failure type of an exception raised while talking SMTP."""
    if isinstance(exc, DeliveryFailure):
        return exc
    tls = _tls_cause(exc)
    if tls is not None:
        return PermanentFailure(f"TLS failure: {getattr(tls, 'reason', None) or tls}")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        worst = min(codes) if any(400 <= c < 500 for c in codes) else max(codes, default=550)
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return _by_code(worst, f"All recipients refused: {detail}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return PermanentFailure(f"Authentication failed: {exc.message}", smtp_code=exc.code)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return PermanentFailure(f"Not supported by the server: {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError | TimeoutError):
        return TemporaryFailure(f"Timeout: {exc}" if str(exc) else "Timeout")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError):
        return TemporaryFailure(str(exc) or "Connection lost")
    if isinstance(exc, aiosmtplib.SMTPException):
        # STARTTLS or AUTH demanded but not offered: the account is misconfigured.
        return PermanentFailure(exc.message)
    if isinstance(exc, ConnectionError | OSError):
        return TemporaryFailure(f"Connection error: {exc}")
    return TemporaryFailure(f"{type(exc).__name__}: {exc}")
