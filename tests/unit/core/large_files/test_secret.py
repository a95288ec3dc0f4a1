"""The download secret: configured, generated once in embedded mode, refused when weak."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from mail_proxy.config import Settings
from mail_proxy.errors import ConfigError
from mail_proxy.large_files.secret import SECRET_FILE, load_download_secret

EXTERNAL = SecretStr("postgresql://u:p@db/mail")


def test_a_configured_secret_is_used(tmp_path: Path) -> None:
    settings = Settings(download_secret=SecretStr("x" * 40), data_dir=tmp_path)
    assert load_download_secret(settings) == b"x" * 40
    assert not (tmp_path / SECRET_FILE).exists()


@pytest.mark.parametrize("value", ["short", "genro-mail-proxy-default-secret-change-me"])
def test_weak_or_published_secrets_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="GMP_DOWNLOAD_SECRET"):
        load_download_secret(Settings(download_secret=SecretStr(value)))


def test_embedded_mode_generates_one_and_keeps_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "inst")
    first = load_download_secret(settings)
    assert first is not None
    assert len(first) >= 32
    path = tmp_path / "inst" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_download_secret(settings) == first  # links survive a restart


def test_an_external_database_without_a_secret_has_none(tmp_path: Path) -> None:
    settings = Settings(database_url=EXTERNAL, data_dir=tmp_path)
    assert load_download_secret(settings) is None
    assert not (tmp_path / SECRET_FILE).exists()
