# SPDX-License-Identifier: Apache-2.0
"""The operator's encryption keyring, following the encryption-key Secret, and the background
re-encryption of stored secrets under its primary key.

Rotation (the chart README's runbook): the Secret gets a new `MAIL_PROXY_ENCRYPTION_KEY` and
keeps the old one in `MAIL_PROXY_PREVIOUS_ENCRYPTION_KEYS`; `follow_key_secret` swaps the
operator's ring within seconds (no restart), and `reencrypt_loop` (leader only) re-seals every
row not under the primary, in one transaction per pass, and exports how many are left
(`mail_proxy_operator_secrets_under_old_keys`). Once that reads 0 and every other process has
the new key, the old one can be dropped from the Secret. Nothing is rewritten from a value the
ring cannot read: a key rotated elsewhere (`mail-proxy rotate-key`) waits for its key.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from mail_proxy.db.rotate import count_stale, reencrypt_stale
from mail_proxy.encryption import PREVIOUS_KEYS_ENV, SecretBox, decode_key, decode_keys
from mail_proxy.errors import ConfigError, UnknownEncryptionKey
from mail_proxy_operator.context import OperatorContext
from mail_proxy_operator.kube_api import KubeApiError
from mail_proxy_operator.secrets import decode_value

log = logging.getLogger("mail_proxy_operator.keyring")


async def read_key_secret(
    ctx: OperatorContext, *, namespace: str, name: str, key_field: str
) -> SecretBox:
    """The keyring a Secret holds (primary under `key_field`, previous keys beside it)."""
    secret = await ctx.kube.get_secret(namespace, name)
    if secret is None:
        raise ConfigError(f"encryption-key Secret {namespace}/{name} not found")
    primary = decode_value(secret, key_field)
    if not primary:
        raise ConfigError(f"encryption-key Secret {namespace}/{name} has no key '{key_field}'")
    previous = decode_value(secret, PREVIOUS_KEYS_ENV) or ""
    source = f"Secret {namespace}/{name}"
    return SecretBox(
        decode_key(primary, source=f"{source} key {key_field}"),
        previous=decode_keys(previous, source=f"{source} key {PREVIOUS_KEYS_ENV}"),
    )


async def follow_key_secret(
    ctx: OperatorContext,
    *,
    namespace: str,
    name: str,
    key_field: str,
    interval_seconds: float,
    changed: asyncio.Event,
) -> None:
    """Poll the Secret; swap `ctx.box` when its keys change and set `changed`. Runs forever."""
    problem = ""
    while True:
        try:
            ring = await read_key_secret(ctx, namespace=namespace, name=name, key_field=key_field)
        except (KubeApiError, ConfigError) as exc:
            if str(exc) != problem:
                problem = str(exc)
                log.error("keeping the current encryption keys: %s", exc)
        else:
            problem = ""
            if ring.key_ids != ctx.box.key_ids:
                ctx.box = ring
                log.info(
                    "encryption keys changed",
                    extra={
                        "action": "keyring_changed",
                        "primary_key_id": ring.primary_key_id,
                        "key_ids": list(ring.key_ids),
                    },
                )
                changed.set()
        await asyncio.sleep(interval_seconds)


async def reencrypt_pass(ctx: OperatorContext) -> int:
    """Re-seal what is not under the primary key; returns rows still left (0: done)."""
    box = ctx.box
    async with ctx.pool.acquire(timeout=30) as conn:
        async with conn.transaction():
            changed = await reencrypt_stale(conn, box=box)
        left = await count_stale(conn, box=box)
    ctx.metrics.stale_secrets.set(left)
    if changed:
        log.info(
            "re-encrypted stored secrets",
            extra={"action": "reencrypt", "rows": changed, "primary_key_id": box.primary_key_id},
        )
    return left


async def reencrypt_loop(
    ctx: OperatorContext, *, interval_seconds: float, changed: asyncio.Event
) -> None:
    """Leader only: a pass at start, after every keyring change, and every interval."""
    unknown = ""
    while True:
        try:
            await reencrypt_pass(ctx)
            unknown = ""
        except UnknownEncryptionKey as exc:
            if exc.key_id != unknown:
                unknown = exc.key_id
                log.warning("stored secrets wait for their key: %s", exc)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            log.debug("re-encryption pass skipped: %s", type(exc).__name__)
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), interval_seconds)
        except TimeoutError:
            pass
