# SPDX-License-Identifier: Apache-2.0
"""Re-encrypting stored secrets: all of them under a new key (`mail-proxy rotate-key`), or
those not yet under a keyring's primary key (the operator's background rotation).

Every place a secret is stored is listed once in `SECRET_COLUMNS` (plain text columns) and
`SECRET_DOCUMENTS` (JSON documents whose `token`/`password` fields are sealed, the
`client_auth` shape): a new secret column is added there and both paths cover it. The caller
owns the transaction; rows are locked (`FOR UPDATE`) while they are rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from mail_proxy.encryption import SecretBox

# The fields of a sealed document that hold secrets: `client_auth` (see mail_proxy.redact)
# and a tenant's `bounce_config` (imap_password).
_DOCUMENT_SECRETS = ("token", "password", "imap_password")


@dataclass(frozen=True)
class SecretColumns:
    """Text columns of `table` (row key `key`) that hold `ENC:` values."""

    table: str
    key: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class SecretDocument:
    """A JSON document (column `column`, optionally under `path` inside it) with sealed fields."""

    table: str
    key: str
    column: str
    path: str | None = None
    fields: tuple[str, ...] = _DOCUMENT_SECRETS


SECRET_COLUMNS = (
    SecretColumns("accounts", "pk", ("password", "imap_password")),
    SecretColumns("instance", "id", ("bounce_imap_password",)),
    SecretColumns("webhooks", "pk", ("secret", "previous_secret")),
)
SECRET_DOCUMENTS = (
    SecretDocument("tenants", "id", "client_auth"),
    SecretDocument("tenants", "id", "bounce_config"),
    SecretDocument("instance", "id", "config", path="client_sync_auth"),
    SecretDocument("provider_feedback", "pk", "config"),
)

Transform = Callable[[str], str | None]


def _sealed_values(doc: Any, fields: tuple[str, ...]) -> list[str]:
    if not isinstance(doc, dict):
        return []
    return [doc[k] for k in fields if isinstance(doc.get(k), str)]


def _transform_doc(
    doc: dict[str, Any], change: Transform, fields: tuple[str, ...]
) -> dict[str, Any]:
    out = dict(doc)
    for k in fields:
        if isinstance(out.get(k), str):
            out[k] = change(out[k])
    return out


async def _rewrite(
    conn: asyncpg.Connection, *, pick: Callable[[str | None], bool], change: Transform
) -> int:
    """Apply `change` to every stored secret `pick` selects; returns rows rewritten."""
    changed = 0
    for spec in SECRET_COLUMNS:
        present = " OR ".join(f"{c} IS NOT NULL" for c in spec.columns)
        rows = await conn.fetch(
            f"SELECT {spec.key}, {', '.join(spec.columns)} FROM {spec.table} "
            f"WHERE {present} ORDER BY {spec.key} FOR UPDATE"
        )
        for row in rows:
            if not any(pick(row[c]) for c in spec.columns):
                continue
            sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(spec.columns))
            values = [change(row[c]) if row[c] is not None else None for c in spec.columns]
            await conn.execute(
                f"UPDATE {spec.table} SET {sets} WHERE {spec.key} = $1",
                row[spec.key],
                *values,
            )
            changed += 1
    for doc_spec in SECRET_DOCUMENTS:
        rows = await conn.fetch(
            f"SELECT {doc_spec.key}, {doc_spec.column} FROM {doc_spec.table} "
            f"WHERE {doc_spec.column} IS NOT NULL ORDER BY {doc_spec.key} FOR UPDATE"
        )
        for row in rows:
            whole = row[doc_spec.column]
            doc = whole.get(doc_spec.path) if doc_spec.path and isinstance(whole, dict) else whole
            if not isinstance(doc, dict) or not any(
                pick(v) for v in _sealed_values(doc, doc_spec.fields)
            ):
                continue
            new_doc = _transform_doc(doc, change, doc_spec.fields)
            stored = {**whole, doc_spec.path: new_doc} if doc_spec.path else new_doc
            await conn.execute(
                f"UPDATE {doc_spec.table} SET {doc_spec.column} = $2 WHERE {doc_spec.key} = $1",
                row[doc_spec.key],
                stored,
            )
            changed += 1
    return changed


def _encrypted(value: str | None) -> bool:
    return bool(value)


async def reencrypt_all(conn: asyncpg.Connection, *, old: SecretBox, new: SecretBox) -> int:
    """Decrypt every secret with `old`, encrypt it with `new`; returns rows changed.

    Raises `EncryptionError` (nothing written: the caller's transaction rolls back) when a
    value cannot be read with `old`.
    """

    def change(value: str) -> str | None:
        return new.encrypt(old.decrypt(value))

    return await _rewrite(conn, pick=_encrypted, change=change)


async def reencrypt_stale(conn: asyncpg.Connection, *, box: SecretBox) -> int:
    """Re-seal every secret not under `box`'s primary key (a previous key, or no key id).

    Values sealed by a key the ring lacks raise `UnknownEncryptionKey`: the caller rolls back
    and reports it; nothing is ever rewritten from a value that could not be read.
    """

    def change(value: str) -> str | None:
        return box.encrypt(box.decrypt(value)) if box.needs_reencrypt(value) else value

    return await _rewrite(conn, pick=box.needs_reencrypt, change=change)


async def count_stale(conn: asyncpg.Connection, *, box: SecretBox) -> int:
    """Rows holding at least one secret not under `box`'s primary key (nothing is changed)."""
    total = 0
    for spec in SECRET_COLUMNS:
        for row in await conn.fetch(f"SELECT {', '.join(spec.columns)} FROM {spec.table}"):
            total += any(box.needs_reencrypt(row[c]) for c in spec.columns)
    for doc_spec in SECRET_DOCUMENTS:
        for row in await conn.fetch(
            f"SELECT {doc_spec.column} FROM {doc_spec.table} WHERE {doc_spec.column} IS NOT NULL"
        ):
            whole = row[doc_spec.column]
            doc = whole.get(doc_spec.path) if doc_spec.path and isinstance(whole, dict) else whole
            total += any(box.needs_reencrypt(v) for v in _sealed_values(doc, doc_spec.fields))
    return total
