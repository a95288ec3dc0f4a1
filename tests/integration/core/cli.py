"""Running the `mail-proxy` command as a subprocess, the way a user does."""

from __future__ import annotations

import asyncio
import os
import sys


def cli_env(**extra: str) -> dict[str, str]:
    """The test's environment without any GMP_/MAIL_PROXY_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GMP_", "MAIL_PROXY_"))}
    env.update(extra)
    return env


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """`mail-proxy ARGS...` to completion: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mail_proxy_cli.main",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
