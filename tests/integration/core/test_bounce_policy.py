"""record_bounce: the event, the log and the suppression decision (hard, soft N in D, warning)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from mail_proxy.db.bounces import Bounce, SuppressionPolicy, record_bounce
from mail_proxy.db.pool import connect
from mail_proxy.db.suppressions import get_suppression


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(dsn)
    await connection.execute("INSERT INTO tenants (id) VALUES ('acme'), ('other')")
    await connection.execute(
        "INSERT INTO messages (id, tenant_id, payload, state) VALUES "
        "('m1', 'acme', '{}', 'sent'), ('m1', 'other', '{}', 'sent')"
    )
    try:
        yield connection
    finally:
        await connection.close()


def _bounce(kind: str = "soft", **fields: object) -> Bounce:
    values: dict[str, object] = {
        "tenant_id": "acme",
        "address": "x@example.org",
        "bounce_type": kind,
        "code": "450" if kind == "soft" else "511",
        "reason": "mailbox busy",
        "event_ts": 100,
        "source": "test",
        **fields,
    }
    return Bounce(**values)  # type: ignore[arg-type]


async def test_soft_bounces_suppress_after_the_limit_warnings_never(
    conn: asyncpg.Connection,
) -> None:
    policy = SuppressionPolicy(soft_limit=3, soft_window_seconds=3600)
    for _ in range(5):
        assert not (
            await record_bounce(conn, bounce=_bounce(warning=True), policy=policy)
        ).suppressed
    assert await get_suppression(conn, tenant_id="acme", address="x@example.org") is None
    results = [
        (await record_bounce(conn, bounce=_bounce(), policy=policy)).suppressed for _ in range(3)
    ]
    assert results == [False, False, True]
    entry = await get_suppression(conn, tenant_id="acme", address="X@example.org")
    assert entry is not None
    assert entry.source == "soft_bounces"
    # Other tenants are untouched.
    assert await get_suppression(conn, tenant_id="other", address="x@example.org") is None


async def test_old_soft_bounces_do_not_count(conn: asyncpg.Connection) -> None:
    policy = SuppressionPolicy(soft_limit=2, soft_window_seconds=3600)
    await record_bounce(conn, bounce=_bounce(), policy=policy)
    await conn.execute("UPDATE bounce_log SET bounced_at = now() - interval '2 hours'")
    assert not (await record_bounce(conn, bounce=_bounce(), policy=policy)).suppressed
    assert (await record_bounce(conn, bounce=_bounce(), policy=policy)).suppressed


async def test_a_hard_bounce_records_the_event_on_the_right_tenant(
    conn: asyncpg.Connection,
) -> None:
    pk = await conn.fetchval("SELECT pk FROM messages WHERE tenant_id = 'other' AND id = 'm1'")
    recorded = await record_bounce(
        conn,
        bounce=_bounce("hard", tenant_id="other", message_pk=pk, reason="550 5.1.1 unknown"),
        policy=SuppressionPolicy(),
    )
    assert recorded.suppressed
    assert recorded.message_id == "m1"
    rows = await conn.fetch("SELECT tenant_id, event_type, description FROM message_events")
    assert [tuple(r) for r in rows] == [("other", "bounce", "550 5.1.1 unknown")]
    entry = await get_suppression(conn, tenant_id="other", address="x@example.org")
    assert entry is not None
    assert entry.message_id == "m1"
    # A pk of another tenant's message never gets an event.
    recorded = await record_bounce(
        conn, bounce=_bounce("hard", message_pk=pk), policy=SuppressionPolicy()
    )
    assert recorded.event_id is None


async def test_a_bounce_reason_postgres_cannot_store_as_sent_is_stored_readable(
    conn: asyncpg.Connection,
) -> None:
    """A DSN is written by whoever sent it: a NUL or a byte that is not UTF-8 in its reason is
    stored as U+FFFD (`db.storable`), not a failed statement retried for ever."""
    pk = await conn.fetchval("SELECT pk FROM messages WHERE tenant_id = 'acme'")
    policy = SuppressionPolicy(soft_limit=3, soft_window_seconds=3600)
    bounce = _bounce("hard", reason="5.1.1 no\x00such user m\udcfcller", message_pk=pk)
    assert (await record_bounce(conn, bounce=bounce, policy=policy)).suppressed
    entry = await get_suppression(conn, tenant_id="acme", address="x@example.org")
    assert entry is not None
    assert entry.reason == "5.1.1 no\ufffdsuch user m\ufffdller"
    description = await conn.fetchval(
        "SELECT description FROM message_events WHERE message_pk = $1", pk
    )
    assert description == "5.1.1 no\ufffdsuch user m\ufffdller"
