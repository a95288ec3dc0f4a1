# SPDX-License-Identifier: BUSL-1.1
"""Where DSNs should go: the correlation secret and every return path, read in one query.

Senders keep a snapshot (`BounceRouting`) and refresh it now and then; building a message then
costs no query. The envelope sender of a message that sets no `return_path` is its tenant's
bounce return path, else the instance's `bounce_return_path`; a tenant with `verp` on gets
`local+<token>@domain` so the DSN names the message even when it quotes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from mail_proxy.inbound.correlation import message_token, verp_address

_READ = """
SELECT i.correlation_secret, i.bounce_return_path,
       coalesce((SELECT jsonb_object_agg(t.id, jsonb_build_object(
                    'return_path', t.bounce_config->>'return_path',
                    'verp', coalesce((t.bounce_config->>'verp')::boolean, false)))
                 FROM tenants t WHERE t.bounce_config IS NOT NULL), '{}'::jsonb) AS tenants
FROM instance i WHERE i.id = 1
"""


@dataclass(frozen=True)
class TenantRouting:
    return_path: str | None
    verp: bool


@dataclass(frozen=True)
class BounceRouting:
    secret: str
    return_path: str | None = None
    tenants: dict[str, TenantRouting] = field(default_factory=dict)

    def token(self, message_pk: int) -> str:
        return message_token(self.secret, message_pk)

    def envelope_sender(self, tenant_id: str, token: str) -> str | None:
        """The default envelope sender for a tenant's message, or None (use `from`)."""
        tenant = self.tenants.get(tenant_id)
        return_path = (tenant and tenant.return_path) or self.return_path
        if not return_path or "@" not in return_path:
            return None
        if tenant is not None and tenant.verp:
            return verp_address(return_path, token)
        return return_path


async def load_bounce_routing(conn: asyncpg.Connection) -> BounceRouting:
    row = await conn.fetchrow(_READ)
    tenants = {
        tenant_id: TenantRouting(value.get("return_path") or None, bool(value.get("verp")))
        for tenant_id, value in (row["tenants"] or {}).items()
    }
    return BounceRouting(row["correlation_secret"], row["bounce_return_path"] or None, tenants)
