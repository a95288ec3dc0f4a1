"""One registry of running instances, whoever started them: a `mail-proxy serve` run by hand (what
`make run` does) is seen by `list`, `NAME info`, `stop`; a second server on the same data is
refused naming the running one; the embedded Postgres belongs to whoever runs the instance now,
found by data dir, never through a pid file a killed process left behind."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.cli.conftest import COMMAND, Cli, processes_mentioning, wait_for


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Served:
    """`mail-proxy serve` in the foreground of a shell, as `make run` runs it."""

    def __init__(self, cli: Cli, port: int, *args: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = cli.root / f"serve-{port}.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*COMMAND, "serve", "--port", str(port), *args],
                env=cli.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self) -> None:
        assert wait_for(lambda: self.proc.poll() is not None or _healthy(self.url), seconds=90)
        assert self.proc.poll() is None, self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


@pytest.fixture
def served(cli: Cli) -> Iterator[list[Served]]:
    started: list[Served] = []
    try:
        yield started
    finally:
        for one in started:
            if one.proc.poll() is None:
                one.proc.kill()
                one.proc.wait(timeout=30)


@pytest.mark.timeout(400)
def test_a_serve_run_by_hand_is_in_the_registry_and_never_doubled(
    cli: Cli, served: list[Served]
) -> None:
    first = Served(cli, free_port())
    served.append(first)
    first.wait_healthy()
    folder = cli.home / "default"

    [row] = cli.json("list")
    assert row["name"] == "default"
    assert row["running"] is True
    assert row["pid"] == first.proc.pid
    assert row["port"] == first.port
    assert row["pending"] == 0  # the CLI found its admin token and URL by itself
    info = cli.json("default", "info")
    assert info["pid"] == first.proc.pid
    # No server.log is written in the foreground: info says where the logs go instead.
    assert not (cli.home / "default" / "server.log").exists()
    assert info["log"] == "the terminal of `mail-proxy serve` (stderr)"

    # `start default` does not start a second server on the same data: it names the running one.
    again = cli.run("start", "default")
    assert "already running" in again.stdout
    assert f"pid {first.proc.pid}" in again.stdout
    assert first.url in again.stdout
    moved = cli.run("start", "default", "--port", str(free_port()), ok=False)
    assert moved.returncode == 1
    assert f"already runs on port {first.port}" in moved.stderr
    assert len(processes_mentioning(f"{folder}/pgdata")) >= 1

    # Nor does a second `serve` (another shell, another port): refused, the first one named.
    second = Served(cli, free_port())
    served.append(second)
    assert second.proc.wait(timeout=60) != 0
    refusal = second.log.read_text()
    assert "is in use by `mail-proxy serve`" in refusal
    assert f"pid {first.proc.pid}" in refusal
    assert first.url in refusal
    assert _healthy(first.url)

    # `stop` finds it too, and it exits cleanly with its Postgres.
    assert "stopped" in cli.run("stop", "default").stdout
    assert first.proc.wait(timeout=60) == 0, first.log.read_text()
    assert wait_for(lambda: not processes_mentioning(str(folder)), seconds=30)
    assert cli.json("list")[0]["running"] is False


@pytest.mark.timeout(400)
def test_postgres_left_by_a_killed_serve_is_stopped_by_the_next_clean_stop(
    cli: Cli, served: list[Served]
) -> None:
    pgdata = cli.home / "default" / "pgdata"
    killed = Served(cli, free_port())
    served.append(killed)
    killed.wait_healthy()
    os.kill(killed.proc.pid, signal.SIGKILL)
    killed.proc.wait(timeout=30)
    assert processes_mentioning(str(pgdata))  # pgserver left Postgres running
    assert (cli.home / "default" / "server.pid").exists()  # naming the dead process
    assert cli.json("list")[0]["running"] is False  # the lock, not the file, is the truth

    # The next server adopts that Postgres, and a clean stop (Ctrl-C here) stops it.
    restarted = Served(cli, free_port())
    served.append(restarted)
    restarted.wait_healthy()
    assert cli.json("list")[0]["pid"] == restarted.proc.pid
    restarted.proc.send_signal(signal.SIGINT)
    assert restarted.proc.wait(timeout=60) == 0, restarted.log.read_text()
    assert wait_for(lambda: not processes_mentioning(str(pgdata)), seconds=30)


def test_a_command_holding_the_database_is_named_when_start_is_refused(cli: Cli) -> None:
    from mail_proxy.instance_owner import Ownership

    folder: Path = cli.home / "busy"
    folder.mkdir(parents=True)
    with Ownership(folder, "migrate"):
        refused = cli.run("start", "busy", "--port", str(free_port()), ok=False)
    assert refused.returncode == 1
    assert f"`mail-proxy migrate` (pid {os.getpid()})" in refused.stderr
    assert not processes_mentioning(str(folder))


@pytest.mark.timeout(400)
def test_a_serve_with_a_data_dir_outside_the_home_is_listed(cli: Cli, served: list[Served]) -> None:
    """Issue 14: `serve --data-dir` anywhere is in the one registry (a link in the home)."""
    elsewhere = cli.root / "projects" / "shop-mail"
    first = Served(cli, free_port(), "--data-dir", str(elsewhere))
    served.append(first)
    first.wait_healthy()
    [row] = cli.json("list")
    assert row["name"] == "shop-mail"
    assert row["running"] is True
    assert row["pid"] == first.proc.pid
    assert row["port"] == first.port
    assert (cli.home / "shop-mail").resolve() == elsewhere.resolve()
    assert cli.json("shop-mail", "info")["pid"] == first.proc.pid
    assert "listed as 'shop-mail'" in first.log.read_text()

    assert "stopped" in cli.run("stop", "shop-mail").stdout
    assert first.proc.wait(timeout=60) == 0, first.log.read_text()
    assert cli.json("list")[0]["running"] is False
    assert "deleted" in cli.run("delete", "shop-mail", "--force").stdout
    assert not elsewhere.exists()
    assert not (cli.home / "shop-mail").is_symlink()
    assert cli.json("list") == []
