# SPDX-License-Identifier: BUSL-1.1
"""A tenant's `large_file_config` (reference section 6.6): what happens to an oversized attachment.

Stored shape, v0.6 field names and defaults::

    {"enabled": false, "max_size_mb": 10.0, "storage_url": null, "public_base_url": null,
     "file_ttl_days": 30, "lifespan_after_download_days": null, "action": "warn"}

`max_size_mb` is a per-attachment threshold in MiB compared with `>`. `action` is `warn` (log,
attach normally), `reject` (the message fails with `reject_reason`) or `rewrite` (upload to
`storage_url`, replace the attachment with a download link in the body). The config bounds
resource use, so only an admin may set it (SPEC section 6).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MIB = 1024 * 1024
# SigV4 (S3) and V4 (GCS) signed URLs are refused beyond 7 days by the storage itself.
PRESIGN_MAX_SECONDS = 7 * 86_400
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "az", "abfs")
# Stores whose own signed URLs can serve a link (within PRESIGN_MAX_SECONDS).
SELF_SIGNING_SCHEMES = frozenset({"s3", "gs", "gcs"})
# The longest file_ttl_days / lifespan_after_download_days (ten years), API and Tenant CRD alike.
MAX_DAYS = 3650


class Action(StrEnum):
    WARN = "warn"
    REJECT = "reject"
    REWRITE = "rewrite"


@dataclass(frozen=True)
class LargeFilePolicy:
    """The parsed `large_file_config`; sizes in MiB, durations in days as in the stored form."""

    enabled: bool = False
    max_size_mb: float = 10.0
    storage_url: str | None = None
    public_base_url: str | None = None
    file_ttl_days: int = 30
    lifespan_after_download_days: int | None = None
    action: Action = Action.WARN

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> LargeFilePolicy | None:
        """The policy in force, or None when absent or disabled (then nothing happens).

        Raises `ValueError` for a stored value that cannot work (the API refuses those, so
        only a row written behind its back gets here).
        """
        if not config or not config.get("enabled"):
            return None
        raw_max: Any = config.get("max_size_mb")
        max_size_mb = 10.0 if raw_max is None else float(raw_max)
        if not math.isfinite(max_size_mb) or max_size_mb < 0:
            raise ValueError(f"max_size_mb must be a positive number, not {max_size_mb!r}")
        ttl = int(config.get("file_ttl_days") or 30)
        lifespan = config.get("lifespan_after_download_days")
        if ttl <= 0 or (lifespan is not None and int(lifespan) <= 0):
            raise ValueError("file_ttl_days and lifespan_after_download_days must be positive")
        return cls(
            enabled=True,
            max_size_mb=max_size_mb,
            storage_url=config.get("storage_url") or None,
            public_base_url=config.get("public_base_url") or None,
            file_ttl_days=ttl,
            lifespan_after_download_days=int(lifespan) if lifespan is not None else None,
            action=Action(config.get("action") or Action.WARN),
        )

    def is_oversize(self, size_bytes: int) -> bool:
        return size_bytes / MIB > self.max_size_mb

    @property
    def ttl_seconds(self) -> int:
        return self.file_ttl_days * 86_400

    @property
    def lifespan_seconds(self) -> int | None:
        days = self.lifespan_after_download_days
        return None if days is None else days * 86_400


def link_base_problem(
    config: Mapping[str, Any] | None, download_base_url: str | None
) -> str | None:
    """Why the download links of a `large_file_config` could never be built, else None.

    One rule for the REST API (422) and the Tenant resource (Ready=False, `InvalidSpec`); the
    Tenant CRD cannot say it in CEL because it depends on the server's GMP_DOWNLOAD_BASE_URL.
    It applies to a config in force (`enabled`, `action: rewrite`, a `storage_url`): a link
    goes through the API's download route unless an `s3://`/`gs://` store signs it itself
    (no `lifespan_after_download_days`, TTL within SigV4's 7 days, no `public_base_url`),
    and the route needs a base URL, the tenant's `public_base_url` or GMP_DOWNLOAD_BASE_URL.
    """
    if not config or not config.get("enabled") or config.get("action") != Action.REWRITE:
        return None
    storage_url = config.get("storage_url")
    if not storage_url or config.get("public_base_url") or download_base_url:
        return None
    scheme = str(storage_url).partition("://")[0].lower()
    ttl_days = config.get("file_ttl_days") or 30
    if (
        scheme in SELF_SIGNING_SCHEMES
        and config.get("lifespan_after_download_days") is None
        and ttl_days * 86_400 <= PRESIGN_MAX_SECONDS
    ):
        return None
    why = (
        f"{scheme}:// storage is served by the download route"
        if scheme not in SELF_SIGNING_SCHEMES
        else "links past 7 days or with lifespan_after_download_days use the download route"
    )
    return (
        f"large_file_config needs public_base_url: {why}, and this server has no "
        "GMP_DOWNLOAD_BASE_URL to build its links with"
    )


def size_mb(size_bytes: int) -> float:
    return size_bytes / MIB


def reject_reason(filename: str, size_bytes: int, max_size_mb: float) -> str:
    """The v0.6 reason of a `reject`: `Attachment 'a.zip' (12.5 MB) exceeds limit (10.0 MB)`."""
    size = f"{size_mb(size_bytes):.1f}"
    return f"Attachment '{filename}' ({size} MB) exceeds limit ({float(max_size_mb)} MB)"
