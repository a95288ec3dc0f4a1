# SPDX-License-Identifier: Apache-2.0
"""Who is calling: the admin, one tenant, or nobody (401).

Header `X-API-Token`. The admin token is `GMP_API_TOKEN` or, when unset, the one generated at
first start (only its hash is stored). Tenant tokens are looked up by hash and expire. Unlike the
reference, no route is ever open and every route enforces the tenant scope.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Security
from fastapi.security import APIKeyHeader

from mail_proxy.db.instance import token_owner
from mail_proxy.intake import NOT_YOUR_TENANT
from mail_proxy.tokens import hash_token, same_secret
from mail_proxy_api.context import Ctx

INVALID_TOKEN = "Invalid or missing API token"
ADMIN_REQUIRED = "Admin token required"
ADMIN_ONLY = "Admin token required, tenant tokens not allowed for this operation"
WRONG_TENANT = NOT_YOUR_TENANT  # the same sentence as the per-message rejection

_header = APIKeyHeader(name="X-API-Token", auto_error=False)


@dataclass(frozen=True)
class Principal:
    tenant_id: str | None  # None: the admin

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    def check_tenant(self, tenant_id: str) -> None:
        """A tenant token may only act on its own tenant (401, the reference's answer)."""
        if self.tenant_id is not None and self.tenant_id != tenant_id:
            raise HTTPException(401, WRONG_TENANT)


async def _identify(ctx: Ctx, token: str | None, missing_detail: str) -> Principal:
    if not token:
        raise HTTPException(401, missing_detail)
    configured = ctx.settings.api_token
    if configured is not None and same_secret(token, configured.get_secret_value()):
        return Principal(tenant_id=None)
    async with ctx.pool.acquire() as conn:
        owner = await token_owner(conn, token_hash=hash_token(token), now_ts=int(time.time()))
    if owner is None or (owner[0] == "admin" and configured is not None):
        raise HTTPException(401, INVALID_TOKEN)
    return Principal(tenant_id=owner[1])


async def _any_token(ctx: Ctx, token: Annotated[str | None, Security(_header)]) -> Principal:
    return await _identify(ctx, token, INVALID_TOKEN)


async def _admin_token(ctx: Ctx, token: Annotated[str | None, Security(_header)]) -> Principal:
    principal = await _identify(ctx, token, ADMIN_REQUIRED)
    if not principal.is_admin:
        raise HTTPException(403, ADMIN_ONLY)
    return principal


Caller = Annotated[Principal, Depends(_any_token)]
Admin = Annotated[Principal, Depends(_admin_token)]
