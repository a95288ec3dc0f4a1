# SPDX-License-Identifier: Apache-2.0
"""This process's share of each account's global SMTP connection cap (see
`mail_proxy.db.connection_slots`): a lane asks for slots before it opens connections and gives
them back when its connections close. A database outage grants nothing new (connections already
open keep working) and a failed release is covered by the slot lease running out.
"""

from __future__ import annotations

import logging
import time

import asyncpg

from mail_proxy.db.connection_slots import (
    acquire_slots,
    excess_slots,
    forget_owner,
    lower_cap,
    release_slots,
    renew_slots,
)
from mail_proxy.db.pool import DATABASE_ERRORS

log = logging.getLogger(__name__)


class ConnectionSlots:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        owner: str,
        lease_seconds: float,
        per_process_limit: int | None = None,
    ) -> None:
        self._pool = pool
        self._owner = owner
        self._lease = float(lease_seconds)
        self.per_process_limit = per_process_limit
        self.held: dict[int, int] = {}  # account pk -> slots this process holds

    async def acquire(self, account_pk: int, wanted: int) -> int:
        """Up to `wanted` more slots for `account_pk`; 0 when the cap is reached or the database
        cannot be asked."""
        if self.per_process_limit is not None:
            wanted = min(wanted, self.per_process_limit - self.held.get(account_pk, 0))
        if wanted <= 0:
            return 0
        try:
            async with self._pool.acquire() as conn:
                granted = await acquire_slots(
                    conn,
                    account_pk=account_pk,
                    owner=self._owner,
                    wanted=wanted,
                    lease_seconds=self._lease,
                    now=time.time(),
                )
        except DATABASE_ERRORS as exc:
            log.warning(
                "cannot take connection slots",
                extra={"action": "slots_error", "account_pk": account_pk, "error": repr(exc)},
            )
            return 0
        if granted:
            self.held[account_pk] = self.held.get(account_pk, 0) + granted
        return granted

    async def release(self, account_pk: int, count: int = 1) -> None:
        left = self.held.get(account_pk, 0) - count
        if left > 0:
            self.held[account_pk] = left
        else:
            self.held.pop(account_pk, None)
        try:
            async with self._pool.acquire() as conn:
                await release_slots(conn, account_pk=account_pk, owner=self._owner, count=count)
        except DATABASE_ERRORS as exc:
            log.warning(
                "cannot give back connection slots; their lease will run out",
                extra={"action": "slots_error", "account_pk": account_pk, "error": repr(exc)},
            )

    async def excess(self) -> dict[int, int]:
        """Account pk -> connections to give back: those above this process's fair share where
        another sender waits for slots. Empty when none, or when the database cannot be asked
        (connections already open keep working)."""
        if not self.held:
            return {}
        try:
            async with self._pool.acquire() as conn:
                return await excess_slots(conn, owner=self._owner, now=time.time())
        except DATABASE_ERRORS as exc:
            log.warning(
                "cannot read connection demand", extra={"action": "slots_error", "error": repr(exc)}
            )
            return {}

    async def renew(self, conn: asyncpg.Connection) -> None:
        """Called by the lease heartbeat on its connection."""
        if self.held:
            await renew_slots(conn, owner=self._owner, lease_seconds=self._lease)

    async def lower_cap(self, account_pk: int, *, for_seconds: float) -> int | None:
        """The server said 421 "too many connections": lower the account's cap for a while."""
        try:
            async with self._pool.acquire() as conn:
                cap = await lower_cap(
                    conn, account_pk=account_pk, now=time.time(), for_seconds=for_seconds
                )
        except DATABASE_ERRORS as exc:
            log.warning(
                "cannot lower the connection cap",
                extra={"action": "slots_error", "account_pk": account_pk, "error": repr(exc)},
            )
            return None
        log.info(
            "connection cap lowered after 421",
            extra={"action": "connection_cap", "account_pk": account_pk, "cap": cap},
        )
        return cap

    async def close(self) -> None:
        """Drop every slot row of this process (it stops)."""
        self.held.clear()
        try:
            async with self._pool.acquire() as conn:
                await forget_owner(conn, owner=self._owner)
        except DATABASE_ERRORS as exc:
            log.warning(
                "cannot drop connection slots", extra={"action": "slots_error", "error": repr(exc)}
            )
