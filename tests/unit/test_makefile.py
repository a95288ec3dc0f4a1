"""`make run` installs only when the venv is older than the pyproject files; `make install`
always installs (checked with `make -n`, which prints the commands without running them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PYPROJECTS = (
    "pyproject.toml",
    "clients/python/pyproject.toml",
    "clients/django-anymail/pyproject.toml",
)


def _dry_run(folder: Path, target: str) -> str:
    return subprocess.run(
        ["make", "--no-print-directory", "-n", target],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_run_installs_only_when_the_venv_is_stale(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for name in PYPROJECTS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("[project]\n")
    assert "pip install" in _dry_run(tmp_path, "run")  # no venv yet

    stamp = tmp_path / ".venv" / ".installed"
    stamp.parent.mkdir()
    stamp.touch()
    later = time.time() + 10
    os.utime(stamp, (later, later))
    fresh = _dry_run(tmp_path, "run")
    assert "pip install" not in fresh
    assert "mail-proxy serve" in fresh
    assert "pip install" in _dry_run(tmp_path, "install")

    os.utime(tmp_path / "pyproject.toml", (later + 10, later + 10))  # a dependency was added
    assert "pip install" in _dry_run(tmp_path, "run")
