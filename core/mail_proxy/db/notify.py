# SPDX-License-Identifier: Apache-2.0
"""The Postgres NOTIFY channels the processes wake each other with (one definition each).

The API, the operator and the senders notify, the sender LISTENs
(`mail_proxy_sender.delivery.wakeups`); `mail_proxy_webhooks` is also sent by the webhook
fan-out trigger of migration 0008, whose SQL keeps the literal name.
"""

from __future__ import annotations

import asyncpg

WORK_CHANNEL = "mail_proxy_work"  # messages became due: lease now, do not wait for the poll
RUN_NOW_CHANNEL = "mail_proxy_run_now"  # payload: a tenant id, or "" for every tenant
WEBHOOKS_CHANNEL = "mail_proxy_webhooks"  # webhook deliveries are waiting
RELOAD_INBOUND_CHANNEL = "mail_proxy_reload_bounce"  # bounce mailboxes or accounts changed
# A sender learned that a destination domain throttles, or accepts again; payload: JSON, see
# mail_proxy_sender.delivery.domain_backoff. Every sender applies it to its own back-off.
DOMAIN_BACKOFF_CHANNEL = "mail_proxy_domain_backoff"


async def notify(conn: asyncpg.Connection, channel: str, payload: str = "") -> None:
    """`pg_notify(channel, payload)`: delivered at commit when `conn` is in a transaction."""
    await conn.execute("SELECT pg_notify($1, $2)", channel, payload)
