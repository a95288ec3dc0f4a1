# SPDX-License-Identifier: Apache-2.0
"""What every reconcile needs: the resource it is about, and the operator's shared handles."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from mail_proxy.encryption import SecretBox
from mail_proxy_operator.kube_api import KubeApi
from mail_proxy_operator.metrics import OperatorMetrics
from mail_proxy_operator.specs import API_VERSION, KINDS


@dataclass(frozen=True)
class ResourceRef:
    """One custom resource: identity, and the generation its spec is at."""

    kind: str
    namespace: str
    name: str
    uid: str
    generation: int

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ResourceRef:
        meta = body["metadata"]
        return cls(
            kind=body["kind"],
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 0),
        )

    @property
    def managed_by(self) -> str:
        """The value stored in `managed_by` on the rows it owns, e.g. `Tenant/mail/acme`."""
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def plural(self) -> str:
        return KINDS[self.kind][0]

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
        }


@dataclass
class OperatorContext:
    """Shared by all handlers of one operator process (kopf hands it over as `memo`)."""

    pool: asyncpg.Pool
    # The keyring; replaced as a whole when the encryption-key Secret changes (never mutated).
    box: SecretBox
    kube: KubeApi
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    # How long a tenant's previous API key stays valid after the operator rotates it.
    api_key_grace_seconds: float = 3600.0
    # This install's name (`mailproxy.genropy.org/instance`; empty: the unlabelled install).
    instance: str = ""
    # GMP_DOWNLOAD_BASE_URL of the install: with it, a Tenant's large files need no
    # publicBaseUrl (the same rule as the REST API: large_files.policy.link_base_problem).
    download_base_url: str | None = None
    # The only namespace a MailProxyInstance is taken from (runner.instance_namespace).
    instance_namespace: str = "default"
    # The reason last announced per resource being deleted (no status to remember it by).
    announced: dict[str, str] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def exclusive(self, ref: ResourceRef) -> AsyncIterator[None]:
        """One reconcile at a time per resource: kopf serialises change handlers per object,
        but its timers run beside them, and a repair must never interleave with an update."""
        lock = self._locks.setdefault(ref.uid, asyncio.Lock())
        async with lock:
            yield

    def forget(self, ref: ResourceRef) -> None:
        """Drop the resource's lock once it is gone."""
        self.announced.pop(ref.uid, None)
        lock = self._locks.get(ref.uid)
        if lock is not None and not lock.locked():
            del self._locks[ref.uid]
