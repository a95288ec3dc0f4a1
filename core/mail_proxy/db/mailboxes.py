# SPDX-License-Identifier: BUSL-1.1
"""IMAP mailboxes to poll, and the lease that gives each one exactly one poller.

Mailboxes come from three places: the instance bounce mailbox (`instance.bounce_*`, key
`instance`), tenants' own bounce mailboxes (`tenants.bounce_config`, key `tenant:<id>`) and PEC
accounts (`accounts.is_pec_account` + `imap_*`, key `pec:<account pk>`; IMAP user and password
default to the SMTP ones, reference section 11).

Each has a row in `inbound_mailboxes`: the holder (`owner`, `lease_until`) and the UID state.
A poller claims a free or expired row, renews it while it works, and records each processed
message in the same transaction that advances `last_uid` while it still holds the lease
(`lock_held`), so a message is recorded exactly once even when the holder dies mid-way and
another process takes over. When the mailbox's identity (host, port, user, folder) changes,
the UID state starts over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import asyncpg

Kind = Literal["bounce", "pec"]
Security = Literal["ssl", "starttls", "plain"]
ProcessedAction = Literal["keep", "seen", "move"]


@dataclass(frozen=True)
class MailboxConfig:
    key: str
    kind: Kind
    tenant_id: str | None  # None: the instance mailbox (every tenant without its own)
    account_pk: int | None  # PEC: the account whose receipts arrive here
    host: str
    port: int
    user: str
    password: str | None  # as stored (ENC:...); decrypted by the poller
    folder: str
    security: Security
    poll_interval_seconds: float
    processed_action: ProcessedAction = "keep"
    processed_folder: str | None = None

    @property
    def identity(self) -> str:
        return f"{self.host}:{self.port}/{self.user}/{self.folder}"


@dataclass(frozen=True)
class MailboxState:
    uidvalidity: int | None
    last_uid: int


def security_of(ssl: bool | None, starttls: bool | None) -> Security:
    if ssl:
        return "ssl"
    return "starttls" if starttls else "plain"


_INSTANCE = """
SELECT bounce_imap_host AS host, bounce_imap_port AS port, bounce_imap_user AS username,
       bounce_imap_password AS password, bounce_imap_folder AS folder, bounce_imap_ssl AS ssl,
       bounce_imap_starttls AS starttls, bounce_poll_interval AS poll,
       bounce_processed_action AS action, bounce_processed_folder AS moved_to
FROM instance WHERE id = 1 AND bounce_enabled AND bounce_imap_host IS NOT NULL
"""
_TENANTS = """
SELECT id, bounce_config FROM tenants
WHERE active AND coalesce((bounce_config->>'enabled')::boolean, false)
  AND bounce_config->>'imap_host' IS NOT NULL
ORDER BY id
"""
_PEC = """
SELECT a.pk, a.tenant_id, a.imap_host, a.imap_port, coalesce(a.imap_user, a.username) AS username,
       coalesce(a.imap_password, a.password) AS password, a.imap_folder, a.imap_ssl,
       a.imap_starttls, a.imap_processed_action, a.imap_processed_folder
FROM accounts a JOIN tenants t ON t.id = a.tenant_id
WHERE a.is_pec_account AND a.imap_host IS NOT NULL AND t.active
ORDER BY a.pk
"""


def _action(value: object) -> ProcessedAction:
    return value if value in ("keep", "seen", "move") else "keep"


async def configured_mailboxes(
    conn: asyncpg.Connection, *, pec_poll_interval_seconds: float
) -> list[MailboxConfig]:
    """Every mailbox that should be polled now (a tenant mailbox without a user is skipped)."""
    found: list[MailboxConfig] = []
    row = await conn.fetchrow(_INSTANCE)
    if row is not None and row["username"]:
        found.append(
            MailboxConfig(
                key="instance",
                kind="bounce",
                tenant_id=None,
                account_pk=None,
                host=row["host"],
                port=row["port"],
                user=row["username"],
                password=row["password"],
                folder=row["folder"] or "INBOX",
                security=security_of(row["ssl"], row["starttls"]),
                poll_interval_seconds=float(row["poll"]),
                processed_action=_action(row["action"]),
                processed_folder=row["moved_to"],
            )
        )
    for row in await conn.fetch(_TENANTS):
        cfg = row["bounce_config"] or {}
        if not cfg.get("imap_user"):
            continue
        ssl = cfg.get("imap_ssl", True)
        found.append(
            MailboxConfig(
                key=f"tenant:{row['id']}",
                kind="bounce",
                tenant_id=row["id"],
                account_pk=None,
                host=str(cfg["imap_host"]),
                port=int(cfg.get("imap_port") or (993 if ssl else 143)),
                user=str(cfg["imap_user"]),
                password=cfg.get("imap_password"),
                folder=str(cfg.get("imap_folder") or "INBOX"),
                security=security_of(ssl, cfg.get("imap_starttls")),
                poll_interval_seconds=float(cfg.get("poll_interval") or 60),
                processed_action=_action(cfg.get("processed_action")),
                processed_folder=cfg.get("processed_folder"),
            )
        )
    for row in await conn.fetch(_PEC):
        if not row["username"]:
            continue
        found.append(
            MailboxConfig(
                key=f"pec:{row['pk']}",
                kind="pec",
                tenant_id=row["tenant_id"],
                account_pk=row["pk"],
                host=row["imap_host"],
                port=row["imap_port"],
                user=row["username"],
                password=row["password"],
                folder=row["imap_folder"] or "INBOX",
                security=security_of(row["imap_ssl"], row["imap_starttls"]),
                poll_interval_seconds=pec_poll_interval_seconds,
                processed_action=_action(row["imap_processed_action"]),
                processed_folder=row["imap_processed_folder"],
            )
        )
    return found


# Take the row when it is free, expired or already ours; a changed identity resets the state.
_CLAIM = """
INSERT INTO inbound_mailboxes AS b (key, kind, tenant_id, identity, owner, lease_until)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
ON CONFLICT (key) DO UPDATE SET
    owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until, kind = EXCLUDED.kind,
    tenant_id = EXCLUDED.tenant_id, identity = EXCLUDED.identity,
    uidvalidity = CASE WHEN b.identity IS DISTINCT FROM EXCLUDED.identity
                       THEN NULL ELSE b.uidvalidity END,
    last_uid = CASE WHEN b.identity IS DISTINCT FROM EXCLUDED.identity
                    THEN 0 ELSE b.last_uid END
WHERE b.owner IS NULL OR b.owner = EXCLUDED.owner OR b.lease_until < now()
RETURNING uidvalidity, last_uid
"""
_LOCK_HELD = """
SELECT uidvalidity, last_uid FROM inbound_mailboxes
WHERE key = $1 AND owner = $2 AND lease_until > now()
FOR UPDATE
"""


async def claim_mailbox(
    conn: asyncpg.Connection, *, mailbox: MailboxConfig, owner: str, lease_seconds: float
) -> MailboxState | None:
    """Take or renew the lease; the UID state, or None when another process holds it."""
    row = await conn.fetchrow(
        _CLAIM,
        mailbox.key,
        mailbox.kind,
        mailbox.tenant_id,
        mailbox.identity,
        owner,
        float(lease_seconds),
    )
    return None if row is None else MailboxState(row["uidvalidity"], row["last_uid"])


async def lock_held(conn: asyncpg.Connection, *, key: str, owner: str) -> MailboxState | None:
    """Inside the caller's transaction: lock the row if `owner` still holds a live lease."""
    row = await conn.fetchrow(_LOCK_HELD, key, owner)
    return None if row is None else MailboxState(row["uidvalidity"], row["last_uid"])


async def set_position(
    conn: asyncpg.Connection,
    *,
    key: str,
    uidvalidity: int,
    last_uid: int,
    lease_seconds: float,
    uncorrelated: int = 0,
) -> None:
    """Advance the UID state (and renew the lease) inside the recording transaction."""
    await conn.execute(
        "UPDATE inbound_mailboxes SET uidvalidity = $2, last_uid = $3, "
        "lease_until = now() + make_interval(secs => $4), uncorrelated = uncorrelated + $5 "
        "WHERE key = $1",
        key,
        uidvalidity,
        last_uid,
        float(lease_seconds),
        uncorrelated,
    )


# The reference showed the UID state on the instance (bounce_*) and PEC account (imap_*) rows:
# kept there too, for GET /instance and the account rows.
_RECORD_POLL = """
WITH b AS (
    UPDATE inbound_mailboxes SET last_poll_ts = $3, last_error = $4,
        last_success_ts = CASE WHEN $4::text IS NULL THEN $3 ELSE last_success_ts END
    WHERE key = $1 AND owner = $2
    RETURNING key, uidvalidity, last_uid, last_success_ts
),
i AS (
    UPDATE instance SET bounce_last_uid = b.last_uid, bounce_uidvalidity = b.uidvalidity,
        bounce_last_sync = b.last_success_ts
    FROM b WHERE b.key = 'instance' AND instance.id = 1
)
UPDATE accounts a SET imap_last_uid = b.last_uid, imap_uidvalidity = b.uidvalidity,
    imap_last_sync = b.last_success_ts
FROM b WHERE b.key = 'pec:' || a.pk
"""


async def record_poll(
    conn: asyncpg.Connection, *, key: str, owner: str, now_ts: int, error: str | None
) -> None:
    """After a poll: its time, success time (when `error` is None) and the last error."""
    await conn.execute(_RECORD_POLL, key, owner, now_ts, error)


async def release_mailbox(conn: asyncpg.Connection, *, key: str, owner: str) -> None:
    """Give the lease up (shutdown): another process may take over at once."""
    await conn.execute(
        "UPDATE inbound_mailboxes SET owner = NULL, lease_until = NULL "
        "WHERE key = $1 AND owner = $2",
        key,
        owner,
    )


async def mailbox_status(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every mailbox row: for metrics (last success) and status."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT key, kind, tenant_id, owner, lease_until, uidvalidity, last_uid, last_poll_ts, "
        "last_success_ts, last_error, uncorrelated FROM inbound_mailboxes ORDER BY key"
    )
    return rows


async def set_bounce_config(
    conn: asyncpg.Connection, *, tenant_id: str, config: dict[str, object] | None
) -> None:
    """Store a tenant's own bounce mailbox (password already encrypted); None removes it."""
    await conn.execute(
        "UPDATE tenants SET bounce_config = $2::text::jsonb, updated_at = now() WHERE id = $1",
        tenant_id,
        None if config is None else json.dumps(config),
    )
