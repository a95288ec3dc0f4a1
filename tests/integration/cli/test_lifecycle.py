"""Local instances: start in the background, list, info, token, restart, stop, leave nothing."""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.cli.conftest import Cli, processes_mentioning, wait_for


def _status(url: str, token: str) -> int:
    return httpx.get(f"{url}/status", headers={"X-API-Token": token}, timeout=10).status_code


@pytest.mark.timeout(400)  # a dozen CLI processes; slow on a loaded machine
def test_start_list_token_restart_stop_leaves_nothing_running(cli: Cli) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = cli.run("start", "life", "--port", str(port))
    assert url in started.stdout
    folder = cli.home / "life"
    assert (folder / "instance.json").exists()
    assert oct((folder / "admin_token").stat().st_mode & 0o777) == "0o600"

    # `start` has returned: the server outlives it, in a session of its own.
    pid = cli.pid_of("life")
    assert os.getsid(pid) == pid
    assert httpx.get(f"{url}/health", timeout=10).json() == {"status": "ok"}

    again = cli.run("start", "life")
    assert "already running" in again.stdout
    assert cli.pid_of("life") == pid

    [row] = cli.json("list")
    assert row == {
        "name": "life",
        "running": True,
        "port": port,
        "pid": pid,
        "pending": 0,
        "url": url,
    }
    assert "life" in cli.run("list").stdout

    info = cli.json("life", "info")
    assert info["running"] is True
    assert info["pid"] == pid
    assert info["pending"] == 0
    assert info["tenants"] == 0

    shown = cli.json("life", "token")
    assert shown["header"] == "X-API-Token"
    assert _status(url, shown["token"]) == 200
    assert _status(url, "not-the-token") == 401

    # A new token works at once on the running server; the old one stops working.
    fresh = cli.json("life", "token", "--regenerate")["token"]
    assert fresh != shown["token"]
    assert _status(url, fresh) == 200
    assert _status(url, shown["token"]) == 401
    assert cli.json("life", "tenants", "list") == []  # the CLI picked up the new token

    cli.run("restart", "life")
    new_pid = cli.pid_of("life")
    assert new_pid != pid
    assert _status(url, fresh) == 200

    stopped = cli.run("stop", "life")
    assert "stopped" in stopped.stdout
    assert wait_for(lambda: not processes_mentioning(str(folder)), seconds=30)
    assert not (folder / "server.pid").exists()
    assert cli.json("list")[0]["running"] is False
    assert "not running" in cli.run("stop", "life").stdout

    down = cli.run("life", "tenants", "list", ok=False)
    assert down.returncode == 1
    assert down.stderr == (
        "error: instance 'life' is not running: start it with `mail-proxy start life`\n"
    )

    # Stopped: a new admin token is written into its database; the next start honours it.
    offline = cli.json("life", "token", "--regenerate")["token"]
    assert offline not in (fresh, shown["token"])
    cli.run("start", "life")
    assert _status(url, offline) == 200
    assert _status(url, fresh) == 401
    cli.run("stop", "life")
    assert not processes_mentioning(str(folder))


def test_stop_after_a_crash_stops_the_leftover_postgres(cli: Cli) -> None:
    cli.run("start", "crash", "--port", str(free_port()))
    folder = cli.home / "crash"
    os.kill(cli.pid_of("crash"), signal.SIGKILL)
    assert wait_for(lambda: not any("--data-dir" in p for p in processes_mentioning(str(folder))))
    assert processes_mentioning(str(folder / "pgdata"))  # pgserver left Postgres running

    assert cli.json("list")[0]["running"] is False
    out = cli.run("stop", "crash").stdout
    assert "leftover Postgres was stopped" in out
    assert not processes_mentioning(str(folder))


def test_instance_names_never_shadow_commands(cli: Cli) -> None:
    for name in ("list", "start", "serve", "token", "migrate"):
        refused = cli.run("start", name, ok=False)
        assert refused.returncode == 2
        assert "is a mail-proxy command" in refused.stderr
    bad = cli.run("start", "no/slashes", ok=False)
    assert bad.returncode == 2
    assert "invalid instance name" in bad.stderr
    unknown = cli.run("nowhere", "tenants", "list", ok=False)
    assert unknown.returncode == 2
    assert "no command or instance named 'nowhere'" in unknown.stderr
    assert not cli.home.exists() or not any(cli.home.iterdir())


def test_top_level_commands_still_answer(cli: Cli) -> None:
    for command in ("serve", "api", "migrate", "token", "rotate-key", "start", "list"):
        assert "Usage: mail-proxy" in cli.run(command, "--help").stdout
    assert "No instances" in cli.run("list").stdout
    assert cli.json("list") == []
