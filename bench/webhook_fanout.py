"""Webhook fan-out benchmark: what the `message_events` trigger (migration 0008) costs the
outcome writer. Prints figures only.

Runs an embedded Postgres in a temporary folder, stores N messages leased by one owner, then
records their `sent` outcomes in batches of 200 (the outcome writer's batch) through
`record_outcomes`, the sender's own statement, in three set-ups:

  none    no webhook anywhere (the trigger's first check returns at once)
  other   an active webhook of another tenant (the trigger joins and matches nothing)
  match   an active webhook of this tenant (every event adds a delivery row)

    python bench/webhook_fanout.py [--messages 5000] [--runs 3]

Prints the median milliseconds per batch of each run, the median of the runs, and the ratio
to `none`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import asyncpg

from mail_proxy.db.migrate import migrate
from mail_proxy.db.outcomes import Outcome, record_outcomes
from mail_proxy.db.pool import connect

BATCH = 200
OWNER = "bench"


async def _prepare(conn: asyncpg.Connection, setup: str, count: int) -> list[int]:
    await conn.execute("TRUNCATE messages, webhooks, tenants CASCADE")
    await conn.execute("INSERT INTO tenants (id) VALUES ('acme'), ('other')")
    if setup != "none":
        await conn.execute(
            "INSERT INTO webhooks (id, tenant_id, url, secret) VALUES ('w', $1, 'https://h', 's')",
            "acme" if setup == "match" else "other",
        )
    rows = await conn.fetch(
        "INSERT INTO messages (id, tenant_id, payload, state, lease_owner, lease_until) "
        "SELECT 'm' || g, 'acme', '{}'::jsonb, 'sending', $1, now() + interval '1 hour' "
        "FROM generate_series(1, $2) g RETURNING pk",
        OWNER,
        count,
    )
    return [r["pk"] for r in rows]


async def _run(conn: asyncpg.Connection, setup: str, count: int) -> float:
    pks = await _prepare(conn, setup, count)
    now = int(time.time())
    times = []
    for start in range(0, len(pks), BATCH):
        outcomes = [
            Outcome(message_pk=pk, state="sent", event_ts=now, sent_at=time.time())
            for pk in pks[start : start + BATCH]
        ]
        began = time.perf_counter()
        async with conn.transaction():
            await record_outcomes(conn, outcomes=outcomes, owner=OWNER)
        times.append((time.perf_counter() - began) * 1000)
    deliveries = await conn.fetchval("SELECT count(*) FROM webhook_deliveries")
    assert deliveries == (count if setup == "match" else 0), deliveries
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        root = Path(tempfile.mkdtemp(prefix="mp-bench-"))
        server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
    try:
        conn = await connect(server.get_uri())
        try:
            await migrate(conn)
            results: dict[str, list[float]] = {"none": [], "other": [], "match": []}
            for _ in range(args.runs):
                for setup in results:  # interleaved, so machine noise hits all three alike
                    results[setup].append(await _run(conn, setup, args.messages))
        finally:
            await conn.close()
    finally:
        server.cleanup()
    base = statistics.median(results["none"])
    print(f"record_outcomes, batches of {BATCH}, {args.messages} messages, ms per batch")
    print(f"{'setup':<7} {'runs':<30} {'median':>8} {'ratio':>6}")
    for setup, values in results.items():
        median = statistics.median(values)
        runs = " ".join(f"{v:6.2f}" for v in values)
        print(f"{setup:<7} {runs:<30} {median:8.2f} {median / base:6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
