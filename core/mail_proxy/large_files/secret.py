# SPDX-License-Identifier: BUSL-1.1
"""The secret that signs download links (`GMP_DOWNLOAD_SECRET`).

Configured: used as given (at least 32 characters; the reference's published default is
refused). Embedded (laptop) mode without one: generated once and kept in the instance folder
(`download_secret`, owner-only), so links survive restarts. Anywhere else without one: None,
and large-file links are refused (the sender attaches normally and counts it; the download
route answers 503) - in Kubernetes the chart's Secret provides it to every API and sender pod.
"""

from __future__ import annotations

import os
import secrets

from mail_proxy.config import Settings
from mail_proxy.errors import ConfigError

SECRET_FILE = "download_secret"
_PUBLISHED_DEFAULT = "genro-mail-proxy-default-secret-change-me"
_MIN_CHARS = 32


def load_download_secret(settings: Settings) -> bytes | None:
    """The signing secret for this process, or None; raises `ConfigError` for a weak one."""
    if settings.download_secret is not None:
        value = settings.download_secret.get_secret_value().strip()
        if value == _PUBLISHED_DEFAULT or len(value) < _MIN_CHARS:
            raise ConfigError(
                f"GMP_DOWNLOAD_SECRET must be at least {_MIN_CHARS} characters "
                "and not the reference's published default"
            )
        return value.encode()
    if not settings.embedded:
        return None
    folder = settings.instance_dir
    path = folder / SECRET_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process of this instance made it first
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48) + "\n")
    value = path.read_text().strip()
    if len(value) < _MIN_CHARS:
        raise ConfigError(f"{path} holds a download secret shorter than {_MIN_CHARS} characters")
    return value.encode()
