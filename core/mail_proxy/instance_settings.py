# SPDX-License-Identifier: Apache-2.0
"""Instance-wide settings stored in `instance.config` (written by the operator from a
`MailProxyInstance`), laid over the environment's settings while a process runs.

The environment gives the base; the stored document wins where it sets a value, and a value it
stops setting falls back to the base. `follow_instance_settings` re-reads the document every
`instance_settings_refresh_seconds`, so senders, reporters and the API pick up a changed
resource without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from pydantic import TypeAdapter, ValidationError

from mail_proxy.config import Settings
from mail_proxy.db.pool import DATABASE_ERRORS
from mail_proxy.encryption import SecretBox
from mail_proxy.errors import EncryptionError
from mail_proxy.redact import open_client_auth

log = logging.getLogger(__name__)

# The `Settings` fields a stored document may override.
OVERRIDABLE = (
    "max_retries",
    "retry_delays_seconds",
    "batch_size_per_account",
    "report_retention_seconds",
    "client_sync_url",
    "client_sync_token",
    "client_sync_user",
    "client_sync_password",
)


def overrides_from_config(config: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    """`Settings` field values from a stored document; `client_sync_auth` is decrypted and
    spread over the token / user / password fields."""
    found = {key: config[key] for key in OVERRIDABLE if config.get(key) is not None}
    auth = open_client_auth(box, config.get("client_sync_auth"))
    if auth:
        if auth.get("method") == "bearer" and auth.get("token"):
            found["client_sync_token"] = auth["token"]
        elif auth.get("method") == "basic" and auth.get("user"):
            found["client_sync_user"] = auth["user"]
            found["client_sync_password"] = auth.get("password") or ""
    return found


def _validated(name: str, value: Any) -> Any:
    """`value` as the `Settings` field `name` holds it (secrets as SecretStr, lists as tuples)."""
    annotation: Any = Settings.model_fields[name].annotation
    return TypeAdapter(annotation).validate_python(value)


class LiveSettings:
    """Applies stored overrides to the one `Settings` object every component of a process reads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._base = {name: getattr(settings, name) for name in OVERRIDABLE}

    def apply(self, overrides: dict[str, Any]) -> list[str]:
        """Set every overridable field (override or base); returns the names that changed."""
        changed = []
        for name in OVERRIDABLE:
            value = self._base[name]
            if name in overrides:
                try:
                    value = _validated(name, overrides[name])
                except (ValidationError, TypeError, ValueError):
                    log.warning("ignoring invalid instance setting", extra={"setting": name})
            if getattr(self.settings, name) != value:
                setattr(self.settings, name, value)
                changed.append(name)
        return changed

    async def refresh(self, pool: asyncpg.Pool, box: SecretBox) -> list[str]:
        async with pool.acquire() as conn:
            config = await conn.fetchval("SELECT config FROM instance WHERE id = 1")
        try:
            overrides = overrides_from_config(config or {}, box)
        except EncryptionError:
            log.warning("cannot decrypt the instance's sync credentials; keeping the others")
            overrides = overrides_from_config({**(config or {}), "client_sync_auth": None}, box)
        changed = self.apply(overrides)
        if changed:
            log.info("instance settings applied", extra={"action": "settings", "fields": changed})
        return changed


async def follow_instance_settings(
    live: LiveSettings, pool: asyncpg.Pool, box: SecretBox, stop: asyncio.Event
) -> None:
    """Re-read the stored settings until `stop` is set; a database outage only delays it."""
    interval = live.settings.instance_settings_refresh_seconds
    while not stop.is_set():
        try:
            await live.refresh(pool, box)
        except DATABASE_ERRORS as exc:
            log.warning("instance settings not refreshed", extra={"error": type(exc).__name__})
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass
