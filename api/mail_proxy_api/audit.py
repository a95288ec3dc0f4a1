# SPDX-License-Identifier: Apache-2.0
"""Appending to the command log from a route: endpoint names are the reference's command names."""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from mail_proxy.db import command_log
from mail_proxy.redact import redact


async def record_command(
    conn: asyncpg.Connection,
    *,
    endpoint: str,
    tenant_id: str | None,
    payload: dict[str, Any],
    status: int = 200,
) -> None:
    """Log a state-changing command, its secrets masked."""
    await command_log.append(
        conn,
        command_ts=int(time.time()),
        endpoint=endpoint,
        tenant_id=tenant_id,
        payload=redact(payload),
        response_status=status,
    )
