"""The container image: slim Python, non-root, `mail-proxy` as entry point, no embedded Postgres.

No Docker engine runs the tests, so the Dockerfile is read, not built (`make chart-check` also
runs hadolint on it when installed).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from mail_proxy_cli.main import cli

from .chart_paths import CHART, ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKERIGNORE = (ROOT / ".dockerignore").read_text().split()


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_runtime_image_is_python_311_slim_and_non_root() -> None:
    stage = _final_stage()
    assert stage[0] == ("FROM", "python:3.11-slim")
    users = [args for op, args in stage if op == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    uid = users[-1].split(":")[0]
    # numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd
    assert uid.isdigit()
    assert int(uid) != 0
    chart_uid = re.search(r"runAsUser: (\d+)", (CHART / "values.yaml").read_text())
    assert chart_uid is not None
    assert chart_uid.group(1) == uid


def test_entry_point_is_mail_proxy_in_exec_form() -> None:
    stage = _final_stage()
    (entrypoint,) = [json.loads(args) for op, args in stage if op == "ENTRYPOINT"]
    assert entrypoint[-1] == "mail-proxy"
    assert entrypoint[0].endswith("tini")  # PID 1 forwards SIGTERM so senders drain
    (command,) = [json.loads(args) for op, args in stage if op == "CMD"]
    assert command == ["api"]


def test_the_commands_the_chart_runs_are_cli_commands() -> None:
    text = "\n".join(path.read_text() for path in (CHART / "templates").glob("*.yaml"))
    used = set(re.findall(r'args: \["([a-z-]+)"', text))
    assert used == {"api", "sender", "operator", "migrate"}
    assert used <= set(cli.commands), "the chart runs a command mail-proxy lacks"


def test_installs_the_operator_extra_and_not_the_embedded_postgres() -> None:
    installs = [args for op, args in _instructions() if op == "RUN" and "pip install" in args]
    assert len(installs) == 1
    assert '".[operator]"' in installs[0]
    assert "embedded" not in installs[0]
    assert "pgserver" not in " ".join(args for _, args in _instructions())


def test_every_package_root_is_copied_and_not_ignored() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    roots = {Path(package).parts[0] for package in wheel["packages"]}
    sources = {
        source
        for op, args in _instructions()
        if op == "COPY" and "--from" not in args
        for source in args.split()[:-1]
    }
    needed = roots | {"pyproject.toml", "README.md", *pyproject["project"]["license-files"]}
    assert needed <= sources, f"the build stage does not COPY {needed - sources}"
    assert not needed & set(DOCKERIGNORE), ".dockerignore hides what the build needs"
