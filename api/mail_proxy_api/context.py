# SPDX-License-Identifier: Apache-2.0
"""What every request handler needs, built once in `main()` and handed to `create_app`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from mail_proxy.config import Settings
from mail_proxy.encryption import SecretBox
from mail_proxy.metrics import Metrics
from mail_proxy_api.sns import SnsCalls


@dataclass
class ApiContext:
    settings: Settings
    pool: asyncpg.Pool
    box: SecretBox
    metrics: Metrics
    started_at: float = field(default_factory=time.monotonic)
    # Verifies large-file download links (mail_proxy.large_files.secret); None: route answers 503.
    download_secret: bytes | None = field(default=None, repr=False)
    # Provider feedback: SNS certificate fetches and subscription confirmations.
    sns: SnsCalls = field(default_factory=SnsCalls)


async def _context(request: Request) -> ApiContext:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread, which cost
    # more than the rest of a small request.
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(_context)]
