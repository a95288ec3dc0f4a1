"""The README's two set-up commands exist, and CI runs the same test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", text, flags=re.MULTILINE))


def test_readme_shows_make_run_and_make_test_in_its_set_up() -> None:
    readme = (ROOT / "README.md").read_text()
    set_up = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^make (\w+)", set_up, flags=re.MULTILINE)
    assert commands == ["run", "test"]


def test_the_makefile_has_the_readme_targets() -> None:
    assert {"run", "test", "help"} <= _make_targets()


def test_ci_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    lines = [line.strip() for line in script.splitlines() if not line.strip().startswith("#")]
    assert "make test" in lines
    assert (ROOT / ".ci" / "run").stat().st_mode & 0o111, ".ci/run must be executable"
