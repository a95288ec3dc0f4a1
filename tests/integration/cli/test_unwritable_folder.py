"""A folder the CLI must write but cannot (issue 14): every command that writes the instance
folder, GMP_HOME or the dev inbox ends with one line naming the folder and what to do, exit
status 1, no traceback; commands that only read (`list`, `NAME info`, `NAME token`) still work."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.cli.conftest import Cli


def _refused(result: subprocess.CompletedProcess[str], folder: Path) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    [line] = lines
    assert line.startswith("error: cannot write the "), line
    assert str(folder) in line, line
    return line


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` unwritable for this process: mode 555, or for root (which ignores modes) the
    immutable attribute; skipped where neither can be had."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)], check=False).returncode:
        pytest.skip("running as root without a file system that takes chattr +i")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


def test_a_home_that_cannot_be_a_folder(cli: Cli) -> None:
    blocker = cli.root / "a-file"
    blocker.write_text("not a folder\n")
    home = blocker / "home"
    env = cli.env(GMP_HOME=str(home))
    data = blocker / "data"
    port = str(free_port())
    cases = [
        (["start", "shop"], home / "shop"),
        (["serve", "--port", port], home / "default"),
        (["serve", "--data-dir", str(data), "--port", port], data),
        (["token", "--regenerate", "--data-dir", str(data)], data),
        (["dev-inbox", "run", "--port", port], home / "dev-inbox"),
    ]
    for args, folder in cases:
        line = _refused(cli.run(*args, ok=False, env=env), folder)
        assert "GMP_HOME" in line or "--dir" in line, line
    assert cli.run("list", env=env).returncode == 0


def test_a_read_only_instance_folder(cli: Cli) -> None:
    folder = cli.home / "shop"
    folder.mkdir(parents=True)
    # What a stopped instance leaves (no Postgres needed to be refused before starting one).
    (folder / "instance.json").write_text('{"name": "shop", "host": "127.0.0.1", "port": 8999}')
    with read_only(folder):
        [row] = cli.json("list")
        assert row["name"] == "shop"
        assert row["running"] is False
        assert cli.json("shop", "info")["running"] is False
        for args in (
            ["start", "shop"],
            ["stop", "shop"],
            ["delete", "shop", "--force"],
            ["shop", "token", "--regenerate"],
            ["serve", "--data-dir", str(folder), "--port", str(free_port())],
        ):
            line = _refused(cli.run(*args, ok=False), folder)
            assert "GMP_HOME" in line, line
        assert (folder / "instance.json").exists()  # nothing was deleted
