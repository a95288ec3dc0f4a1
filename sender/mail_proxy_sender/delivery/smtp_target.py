# SPDX-License-Identifier: Apache-2.0
"""Where an SMTP session goes (`SmtpTarget`, from an account) and how (`SmtpOptions`).

TLS modes (reference section 7.2, with verification on by default):
- implicit TLS when the port is an implicit-TLS port (465) and `use_tls` is true or null;
- mandatory STARTTLS when `use_tls` is true on any other port;
- opportunistic STARTTLS when `use_tls` is null and the server offers it;
- none when `use_tls` is false.
Certificates are verified against the system store (plus `smtp_ca_file`) unless the account
sets `tls_verify` false.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

from mail_proxy.encryption import SecretBox
from mail_proxy.outbound import OutboundPolicy
from mail_proxy_sender.outbound.destinations import Resolver, system_resolver


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
    reconnect_attempts: int = 2  # new sessions for one message after a 421 / dropped one
    data_timeout_seconds: float = 600.0  # the end-of-DATA answer (RFC 5321 4.5.3.2.6)
    # Where account hosts may point: public addresses, plus GMP_OUTBOUND_ALLOW.
    policy: OutboundPolicy = field(default_factory=OutboundPolicy)
    resolver: Resolver = system_resolver


@cache
def tls_context(verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    """The client context: the system store plus `ca_file`, verification off only when asked."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def default_options(
    *,
    timeout_seconds: float,
    implicit_tls_ports: tuple[int, ...],
    ca_file: Path | None,
    reconnect_attempts: int = 2,
    data_timeout_seconds: float = 600.0,
    policy: OutboundPolicy | None = None,
) -> SmtpOptions:
    return SmtpOptions(
        timeout_seconds,
        implicit_tls_ports,
        ca_file,
        socket.gethostname(),
        reconnect_attempts,
        max(timeout_seconds, data_timeout_seconds),
        policy or OutboundPolicy(),
    )
