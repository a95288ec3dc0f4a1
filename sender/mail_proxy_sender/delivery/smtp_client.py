# SPDX-License-Identifier: Apache-2.0
"""One SMTP connection to an account's server, with the account's TLS mode and credentials.

TLS modes (reference section 7.2, with verification on by default):
- implicit TLS when the port is an implicit-TLS port (465) and `use_tls` is true or null;
- mandatory STARTTLS when `use_tls` is true on any other port;
- opportunistic STARTTLS when `use_tls` is null and the server offers it;
- none when `use_tls` is false.
Certificates are verified against the system store (plus `smtp_ca_file`) unless the account
sets `tls_verify` false. Failures leave as `DeliveryFailure` types (see `failures`).
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import aiosmtplib

from mail_proxy.encryption import SecretBox
from mail_proxy.mime import WireMessage
from mail_proxy_sender.delivery.failures import classify_smtp_error


class TlsMode(Enum):
    IMPLICIT = "implicit"
    STARTTLS = "starttls"
    OPPORTUNISTIC = "opportunistic"
    NONE = "none"


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect; equal targets can share connections."""

    host: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool | None
    tls_verify: bool
    max_age_seconds: float

    @classmethod
    def of_account(cls, account: dict[str, Any], box: SecretBox) -> SmtpTarget:
        return cls(
            host=account["host"],
            port=account["port"],
            username=account["username"],
            password=box.decrypt(account["password"]),
            use_tls=account["use_tls"],
            tls_verify=account["tls_verify"],
            max_age_seconds=float(account["ttl"] or 300),
        )

    def tls_mode(self, implicit_ports: tuple[int, ...]) -> TlsMode:
        if self.use_tls is False:
            return TlsMode.NONE
        if self.port in implicit_ports:
            return TlsMode.IMPLICIT
        return TlsMode.STARTTLS if self.use_tls else TlsMode.OPPORTUNISTIC

    def __repr__(self) -> str:  # never show the password
        return f"SmtpTarget({self.host}:{self.port}, user={self.username!r})"


@dataclass(frozen=True)
class SmtpOptions:
    timeout_seconds: float
    implicit_tls_ports: tuple[int, ...]
    ca_file: Path | None
    local_hostname: str


@cache
def _tls_context(verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def default_options(
    *, timeout_seconds: float, implicit_tls_ports: tuple[int, ...], ca_file: Path | None
) -> SmtpOptions:
    return SmtpOptions(timeout_seconds, implicit_tls_ports, ca_file, socket.gethostname())


class SmtpConnection:
    """A connected, logged-in client; `send` delivers one message on it."""

    def __init__(self, target: SmtpTarget, options: SmtpOptions) -> None:
        self.target = target
        self._options = options
        mode = target.tls_mode(options.implicit_tls_ports)
        self._client = aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            local_hostname=options.local_hostname,
            timeout=options.timeout_seconds,
            use_tls=mode is TlsMode.IMPLICIT,
            start_tls={TlsMode.STARTTLS: True, TlsMode.OPPORTUNISTIC: None}.get(mode, False),
            tls_context=_tls_context(target.tls_verify, options.ca_file)
            if mode is not TlsMode.NONE
            else None,
        )
        self.opened_at = 0.0
        self.sends = 0

    async def open(self) -> None:
        """Connect, negotiate TLS and log in; raises a `DeliveryFailure`."""
        try:
            await self._client.connect()
            if self.target.username and self.target.password:
                await self._client.login(self.target.username, self.target.password)
        except Exception as exc:
            self._client.close()
            raise classify_smtp_error(exc) from exc
        self.opened_at = time.monotonic()

    def usable(self, target: SmtpTarget) -> bool:
        """Still connected, for the same target, and younger than the account's `ttl`."""
        return (
            self._client.is_connected
            and target == self.target
            and time.monotonic() - self.opened_at < self.target.max_age_seconds
        )

    async def send(self, message: WireMessage) -> dict[str, str]:
        """Deliver; returns recipients the server refused while accepting the others."""
        try:
            refused, _ = await self._client.sendmail(
                message.envelope_from, message.recipients, message.data
            )
        except Exception as exc:
            raise classify_smtp_error(exc) from exc
        self.sends += 1
        return {addr: f"{resp.code} {resp.message}" for addr, resp in refused.items()}

    async def close(self) -> None:
        if not self._client.is_connected:
            return
        try:
            await self._client.quit(timeout=5)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._client.close()
