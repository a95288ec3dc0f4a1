# SPDX-License-Identifier: Apache-2.0
"""The tenant a tenant-scoped route acts on, and the one answer for a tenant that does not exist.

Every route under a tenant (messages, accounts, webhooks, suppressions, providers, commands)
answers 404 `Tenant '<id>' not found` for an unknown tenant, the reference's wording for
`GET /tenant/{id}` (anchor-behaviour section 4), instead of an empty list that reads as
"nothing here yet". The only exceptions are the v0.6 wire contract's own answers:
suspend/activate (400 `tenant not found`) and add-messages (per message `account not found for
tenant`).
"""

from __future__ import annotations

import asyncpg
from fastapi import HTTPException

from mail_proxy.db import tenants as db_tenants


def tenant_not_found(tenant_id: str) -> HTTPException:
    return HTTPException(404, f"Tenant '{tenant_id}' not found")


async def ensure_tenant(conn: asyncpg.Connection, tenant_id: str) -> None:
    """404 `Tenant '<id>' not found` unless the tenant exists (one indexed lookup)."""
    if not await db_tenants.tenant_exists(conn, tenant_id=tenant_id):
        raise tenant_not_found(tenant_id)


def query_or_body_tenant(query: str | None, body: str | None) -> str | None:
    """A create route takes the tenant from the body or the `?tenant_id=` query like every other
    route; both given and different is a 400 naming both, never a silent pick."""
    if query and body and query != body:
        raise HTTPException(
            400, f"tenant_id differs between the query ({query!r}) and the body ({body!r})"
        )
    return body or query
