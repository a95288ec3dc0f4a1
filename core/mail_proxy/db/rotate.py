# SPDX-License-Identifier: Apache-2.0
"""Re-encrypting every stored secret under a new key (`mail-proxy rotate-key`)."""

from __future__ import annotations

import asyncpg

from mail_proxy.encryption import SecretBox
from mail_proxy.redact import open_client_auth, seal_client_auth


async def reencrypt_all(conn: asyncpg.Connection, *, old: SecretBox, new: SecretBox) -> int:
    """Decrypt with `old`, encrypt with `new`, in the caller's transaction; returns rows changed."""
    changed = 0
    for row in await conn.fetch(
        "SELECT pk, password, imap_password FROM accounts "
        "WHERE password IS NOT NULL OR imap_password IS NOT NULL FOR UPDATE"
    ):
        await conn.execute(
            "UPDATE accounts SET password = $2, imap_password = $3 WHERE pk = $1",
            row["pk"],
            new.encrypt(old.decrypt(row["password"])),
            new.encrypt(old.decrypt(row["imap_password"])),
        )
        changed += 1
    for row in await conn.fetch(
        "SELECT id, client_auth FROM tenants WHERE client_auth IS NOT NULL FOR UPDATE"
    ):
        sealed = seal_client_auth(new, open_client_auth(old, row["client_auth"]))
        await conn.execute("UPDATE tenants SET client_auth = $2 WHERE id = $1", row["id"], sealed)
        changed += 1
    instance = await conn.fetchrow(
        "SELECT bounce_imap_password, config FROM instance WHERE id = 1 FOR UPDATE"
    )
    config = instance["config"] or {}
    if config.get("client_sync_auth"):
        opened = open_client_auth(old, config["client_sync_auth"])
        config = {**config, "client_sync_auth": seal_client_auth(new, opened)}
        await conn.execute("UPDATE instance SET config = $1 WHERE id = 1", config)
        changed += 1
    password = instance["bounce_imap_password"]
    if password is not None:
        await conn.execute(
            "UPDATE instance SET bounce_imap_password = $1 WHERE id = 1",
            new.encrypt(old.decrypt(password)),
        )
        changed += 1
    return changed
