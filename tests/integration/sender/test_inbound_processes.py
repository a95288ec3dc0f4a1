"""Bounce polling across processes: two `mail-proxy sender` processes on one database and one
real IMAP mailbox; exactly one polls it, the other takes over within two poll intervals when
the holder is SIGKILLed, and every bounce reaches the sync endpoint exactly once."""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.sender.conftest import World, eventually
from tests.integration.sender.dovecot import dovecot_server
from tests.integration.sender.inbound_helpers import bounce_events, instance_mailbox, quoted_headers
from tests.integration.sender.processes import sender_processes
from tests.integration.sender.servers import HttpApp, SmtpSink, http_server, smtp_server
from tests.integration.sender.test_reporter import SYNC, answering, items
from tests.samples import bounces

log = logging.getLogger(__name__)
pytestmark = pytest.mark.slow
POLL = 3  # seconds


async def _owner(world: World) -> str | None:
    value = await world.fetchval(
        "SELECT owner FROM inbound_mailboxes WHERE key = 'instance' AND lease_until > now()"
    )
    return str(value) if value else None


@pytest.mark.timeout(300)
async def test_one_poller_failover_and_exactly_once_reports(world: World, tmp_path: Path) -> None:
    sink = SmtpSink()
    receiver = HttpApp({SYNC: answering()})
    ids = [f"b{i}" for i in range(10)]
    with dovecot_server(["multi"]) as imap:
        async with smtp_server(sink) as port, http_server(receiver) as app:
            await world.tenant("acme", client_base_url=app.url)
            await world.account("acme", "smtp1", port)
            await instance_mailbox(world, imap, "multi", poll=POLL)
            await world.enqueue(
                "acme", "smtp1", *({"id": i, "to": [f"{i}@example.com"]} for i in ids)
            )
            async with sender_processes(
                2,
                dsn=world.dsn,
                key=world.key,
                log_dir=tmp_path,
                outbound_allow=("127.0.0.1/32",),
                inbound_refresh_seconds=1,
                send_loop_interval_seconds=0.2,
                lease_seconds=5,
            ) as procs:

                async def sent() -> bool:
                    states = await world.states("acme")
                    return all(states.get(i) == "sent" for i in ids)

                await eventually(sent, timeout=60)
                for i in ids[:5]:
                    imap.append(
                        "multi", bounces.postfix(quoted_headers(sink, i), rcpt=f"{i}@example.com")
                    )

                async def recorded(n: int) -> bool:
                    return len(await bounce_events(world)) >= n

                await eventually(lambda: recorded(5), timeout=30)
                holder = await _owner(world)
                assert holder is not None
                [victim] = [p for p in procs if p.proc and f"-{p.proc.pid}-" in holder]
                survivor = next(p for p in procs if p is not victim)

                await victim.kill()
                killed_at = time.monotonic()
                for i in ids[5:]:
                    imap.append(
                        "multi", bounces.exim(quoted_headers(sink, i), rcpt=f"{i}@example.com")
                    )

                async def taken_over() -> bool:
                    owner = await _owner(world)
                    return owner is not None and owner != holder

                await eventually(taken_over, timeout=4 * POLL, every=0.05)
                takeover_seconds = time.monotonic() - killed_at
                assert survivor.proc is not None
                assert f"-{survivor.proc.pid}-" in str(await _owner(world))
                await eventually(lambda: recorded(10), timeout=30)

                # The killed one comes back: the mailbox stays with its holder, nothing re-read.
                await victim.start()
                await victim.wait_ready()

                async def reported() -> bool:
                    return len([x for x in items(app) if "bounce_ts" in x]) >= 10

                await eventually(reported, timeout=60)
                restarted_at = time.time()
                await eventually(lambda: _polls_since(world, restarted_at), timeout=4 * POLL)
                codes = [await p.stop() for p in procs]

    log.info("failover after SIGKILL: %.2f s (poll interval %s s)", takeover_seconds, POLL)
    assert takeover_seconds < 2 * POLL, takeover_seconds
    assert codes == [0, 0]
    events = await bounce_events(world)
    assert sorted(e["message_id"] for e in events) == sorted(ids)
    per_id = Counter(x["id"] for x in items(app) if "bounce_ts" in x)
    assert per_id == dict.fromkeys(ids, 1)


async def _polls_since(world: World, since: float) -> bool:
    value = await world.fetchval(
        "SELECT last_poll_ts FROM inbound_mailboxes WHERE key = 'instance'"
    )
    return value is not None and value > since + 1
