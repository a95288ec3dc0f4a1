"""SMTP session-opening benchmark: what vetting the account's host costs (issue 9).

Opens and closes sessions to an aiosmtpd server on 127.0.0.1, in turn: plain aiosmtplib
(`connect` + EHLO + QUIT, resolving the name itself) and `SmtpConnection` (resolve once, check
every address against the outbound policy, connect the socket to the vetted address, then the
same EHLO and QUIT). Prints medians and their ratio; asserts nothing. Sessions are pooled and
reused by the sender, so this is a per-connection cost, not a per-message one.

    python bench/smtp_connect.py               # 300 sessions each, host "localhost"
    python bench/smtp_connect.py --sessions 1000 --host 127.0.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time

import aiosmtplib
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink

from mail_proxy.outbound import OutboundPolicy
from mail_proxy_sender.delivery.smtp_client import SmtpConnection
from mail_proxy_sender.delivery.smtp_target import SmtpTarget, default_options


async def _plain(host: str, port: int) -> float:
    started = time.perf_counter()
    client = aiosmtplib.SMTP(hostname=host, port=port, use_tls=False, start_tls=False)
    await client.connect()
    await client.ehlo()
    await client.quit()
    return time.perf_counter() - started


async def _vetted(target: SmtpTarget, policy: OutboundPolicy) -> float:
    options = default_options(
        timeout_seconds=10, implicit_tls_ports=(465,), ca_file=None, policy=policy
    )
    started = time.perf_counter()
    conn = SmtpConnection(target, options)
    await conn.open()
    await conn.close()
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        policy = OutboundPolicy.parse(["127.0.0.1/32", "::1/128"])
        target = SmtpTarget(args.host, port, None, None, False, True, 300.0)
        plain: list[float] = []
        vetted: list[float] = []
        for _ in range(args.sessions):  # interleaved, so load drifts hit both alike
            plain.append(await _plain(args.host, port))
            vetted.append(await _vetted(target, policy))
    finally:
        controller.stop()
    p, v = statistics.median(plain), statistics.median(vetted)
    print(f"sessions: {args.sessions} each to {args.host}:{port}")
    print(f"aiosmtplib connect+EHLO+QUIT median: {p * 1000:.3f} ms")
    print(f"vetted SmtpConnection open+close median: {v * 1000:.3f} ms")
    print(f"ratio vetted/plain: {v / p:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--host", default="localhost")
    asyncio.run(main(parser.parse_args()))
