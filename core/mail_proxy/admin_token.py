# SPDX-License-Identifier: Apache-2.0
"""The admin token when none is configured: generated at first start, only its hash stored."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg

from mail_proxy.db import instance as db_instance
from mail_proxy.tokens import hash_token, new_token

TOKEN_FILE = "admin_token"


async def ensure_admin_token(conn: asyncpg.Connection) -> str | None:
    """Generate and store (hashed) an admin token if there is none; returns it only then."""
    async with conn.transaction():
        await conn.execute("SELECT 1 FROM instance WHERE id = 1 FOR UPDATE")
        if await db_instance.admin_token_hash(conn) is not None:
            return None
        token = new_token()
        await db_instance.set_admin_token_hash(conn, token_hash=hash_token(token))
        return token


async def regenerate_admin_token(conn: asyncpg.Connection) -> str:
    token = new_token()
    await db_instance.set_admin_token_hash(conn, token_hash=hash_token(token))
    return token


def save_local_token(instance_dir: Path, token: str) -> Path:
    """Keep a laptop instance's token beside its data, readable by its owner only."""
    path = instance_dir / TOKEN_FILE
    instance_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return path


def read_local_token(instance_dir: Path) -> str | None:
    path = instance_dir / TOKEN_FILE
    return path.read_text().strip() if path.exists() else None
