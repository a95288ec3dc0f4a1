# SPDX-License-Identifier: Apache-2.0
"""The few Kubernetes API calls the operator makes itself (kopf does the watching), over httpx.

Secrets: read referenced ones, label them for the watch, and write the tenant API-key Secrets.
Custom resources: a metadata patch that nudges kopf to reconcile one again. Errors arrive as
`KubeApiError` with the HTTP status; `temporary` says whether a retry can help. Request and
response bodies are never logged (Secrets travel in them).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from mail_proxy_operator.specs import API_VERSION

_MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


@dataclass(frozen=True)
class KubeAccess:
    """Where the API server is and how to authenticate (built from kopf's login at the edge)."""

    server: str
    headers: dict[str, str]
    ssl_context: ssl.SSLContext | bool


class KubeApiError(Exception):
    """A failed API call: `status` is the HTTP status (0 for no answer), `reason` the API's."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason

    @property
    def temporary(self) -> bool:
        return self.status == 0 or self.status == 429 or self.status >= 500


class KubeNotFound(KubeApiError):
    """404: the object does not exist."""


class KubeConflict(KubeApiError):
    """409: it already exists, or it changed since it was read (stale resourceVersion)."""


class KubeApi:
    """Async client for the calls above; `access` is asked again after a 401 (token rotation)."""

    def __init__(self, access: Callable[[], KubeAccess], *, timeout_seconds: float = 15.0) -> None:
        self._access = access
        self._timeout = timeout_seconds
        self._client = self._new_client()

    def _new_client(self) -> httpx.AsyncClient:
        access = self._access()
        return httpx.AsyncClient(
            base_url=access.server,
            headers=access.headers,
            verify=access.ssl_context,
            timeout=self._timeout,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(
        self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        for attempt in (1, 2):
            try:
                response = await self._client.request(method, path, json=json, headers=headers)
            except httpx.HTTPError as exc:
                raise KubeApiError(0, "Unreachable", f"{method} {path}: {exc!r}") from exc
            if response.status_code == 401 and attempt == 1:
                await self._client.aclose()
                self._client = self._new_client()
                continue
            break
        if response.is_success:
            body: dict[str, Any] = response.json()
            return body
        raise _error(response, f"{method} {path}")

    # --- Secrets -------------------------------------------------------------------------------

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except KubeNotFound:
            return None

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", f"/api/v1/namespaces/{namespace}/secrets", json=body)

    async def replace_secret(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """PUT: with `metadata.resourceVersion` set, fails with KubeConflict if it changed."""
        return await self._call("PUT", f"/api/v1/namespaces/{namespace}/secrets/{name}", json=body)

    async def patch_secret(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._call(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/secrets/{name}",
            json=patch,
            headers=_MERGE_PATCH,
        )

    async def delete_secret(self, namespace: str, name: str) -> bool:
        try:
            await self._call("DELETE", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except KubeNotFound:
            return False
        return True

    # --- custom resources ----------------------------------------------------------------------

    async def patch_resource(
        self, plural: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> None:
        """Merge-patch one of our custom resources (metadata only; status goes through kopf)."""
        await self._call(
            "PATCH",
            f"/apis/{API_VERSION}/namespaces/{namespace}/{plural}/{name}",
            json=patch,
            headers=_MERGE_PATCH,
        )


def _error(response: httpx.Response, what: str) -> KubeApiError:
    # The API's Status object explains itself; it never echoes a Secret's data.
    try:
        status = response.json()
        reason, message = str(status.get("reason", "")), str(status.get("message", ""))
    except ValueError:
        reason, message = response.reason_phrase, ""
    message = f"{what}: {message or response.reason_phrase}"
    if response.status_code == 404:
        return KubeNotFound(404, reason or "NotFound", message)
    if response.status_code == 409:
        return KubeConflict(409, reason or "Conflict", message)
    return KubeApiError(response.status_code, reason, message)
