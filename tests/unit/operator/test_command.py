"""`mail-proxy operator` refuses to start without what it needs, and says what is missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mail_proxy.encryption import KEY_ENV, KEY_FILE


def _operator(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GMP_") and k != KEY_ENV}
    return subprocess.run(
        [sys.executable, "-m", "mail_proxy_cli.main", "operator"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_needs_a_database_url() -> None:
    result = _operator()
    assert result.returncode == 2
    assert "`mail-proxy operator` needs GMP_DATABASE_URL" in result.stderr


@pytest.mark.skipif(KEY_FILE.exists(), reason=f"{KEY_FILE} provides a key on this machine")
def test_needs_an_encryption_key_before_touching_anything() -> None:
    # The URL points nowhere: the key is checked first, so nothing tries to connect.
    result = _operator(GMP_DATABASE_URL="postgresql://nobody@127.0.0.1:9/none")
    assert result.returncode == 1
    assert "set MAIL_PROXY_ENCRYPTION_KEY" in result.stderr
