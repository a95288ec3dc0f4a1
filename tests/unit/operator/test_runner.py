"""Starting with Postgres down: the operator waits with one clear line, never a traceback;
which namespace is the operator's own."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mail_proxy.config import Settings
from mail_proxy_operator.runner import _where, instance_namespace, wait_for_database

DOWN = "postgresql://user:s3cret@127.0.0.1:9/mail?sslmode=disable"


async def test_waiting_for_postgres_says_so_once_and_stops_when_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="mail_proxy_operator")
    waiting = asyncio.create_task(wait_for_database(DOWN, stop))
    await asyncio.sleep(4.5)  # two retries at least
    stop.set()
    assert await waiting is False
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert "127.0.0.1:9/mail is not answering" in lines[0]
    assert "s3cret" not in lines[0]
    assert all(r.exc_info is None for r in caplog.records)


def test_where_never_shows_credentials() -> None:
    assert _where(DOWN) == "127.0.0.1:9/mail"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GMP_OPERATOR_INSTANCE_NAMESPACE": "mail", "POD_NAMESPACE": "ops"}, "mail"),
        ({"POD_NAMESPACE": "ops", "GMP_OPERATOR_NAMESPACES": "a,b"}, "ops"),
        ({"GMP_OPERATOR_NAMESPACES": "a,b"}, "a"),
        ({}, "default"),  # cluster-wide and not in a pod: still one namespace, never "any"
    ],
)
def test_the_instance_namespace_is_never_any(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name in ("GMP_OPERATOR_INSTANCE_NAMESPACE", "POD_NAMESPACE", "GMP_OPERATOR_NAMESPACES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert instance_namespace(Settings()) == expected
