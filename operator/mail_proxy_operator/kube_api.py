# SPDX-License-Identifier: Apache-2.0
"""The Kubernetes API calls the operator makes itself (kopf does the watching), through the
official asyncio client (`kubernetes_asyncio`) and its typed models.

Secrets: read referenced ones, label them for the watch, and write the tenant API-key Secrets.
Custom resources: a metadata patch that nudges kopf to reconcile one again. Events: posted once
per reason transition (see `events`). The Lease of leader election uses the same `ApiClient`.
Errors arrive as `KubeApiError` with the HTTP status (0: no answer); `temporary` says whether a
retry can help. Request and response bodies are never logged (Secrets travel in them).

Credentials (`KubeApi.connect`): the file named by ``KUBECONFIG`` when set, else the pod's
service account (in-cluster), else ``~/.kube/config``: the client's own config loaders.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from mail_proxy.errors import ConfigError
from mail_proxy_operator.specs import GROUP, VERSION

T = TypeVar("T")
# The client would pick strategic merge (Secrets) or JSON patch (custom objects) for a dict.
_MERGE_PATCH = "application/merge-patch+json"


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


def _error(exc: ApiException, what: str) -> KubeApiError:
    # The API's Status object explains itself; it never echoes a Secret's data.
    reason, message = str(exc.reason or ""), ""
    try:
        status = json.loads(exc.body or "{}")
        reason = str(status.get("reason") or reason)
        message = str(status.get("message") or "")
    except (ValueError, AttributeError):
        pass
    text = f"{what}: {message or reason}"
    if exc.status == 404:
        return KubeNotFound(404, reason or "NotFound", text)
    if exc.status == 409:
        return KubeConflict(409, reason or "Conflict", text)
    return KubeApiError(int(exc.status or 0), reason, text)


async def load_configuration() -> client.Configuration:
    """Credentials: KUBECONFIG, else in-cluster, else ~/.kube/config (ConfigError if none)."""
    configuration = client.Configuration()
    try:
        if os.environ.get("KUBECONFIG"):
            await config.load_kube_config(client_configuration=configuration)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        else:
            await config.load_kube_config(client_configuration=configuration)
    except (ConfigException, OSError) as exc:
        raise ConfigError(
            "no Kubernetes credentials: run in a pod with a service account or set KUBECONFIG "
            f"({exc})"
        ) from exc
    return configuration


class KubeApi:
    """Async client for the calls above, over one `ApiClient` (close it with `aclose`)."""

    def __init__(self, api_client: client.ApiClient, *, timeout_seconds: float = 15.0) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._timeout = timeout_seconds

    @classmethod
    async def connect(cls, *, timeout_seconds: float = 15.0) -> KubeApi:
        configuration = await load_configuration()
        return cls(client.ApiClient(configuration), timeout_seconds=timeout_seconds)

    async def aclose(self) -> None:
        await self.api_client.close()

    async def call(self, what: str, request: Awaitable[T]) -> T:
        """Await one client call with the timeout; failures become `KubeApiError`."""
        try:
            return await asyncio.wait_for(request, self._timeout)
        except ApiException as exc:
            raise _error(exc, what) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeApiError(0, "Unreachable", f"{what}: {type(exc).__name__}") from exc

    # --- Secrets -------------------------------------------------------------------------------

    async def get_secret(self, namespace: str, name: str) -> client.V1Secret | None:
        try:
            return await self.call(
                f"GET Secret {namespace}/{name}", self.core.read_namespaced_secret(name, namespace)
            )
        except KubeNotFound:
            return None

    async def create_secret(self, namespace: str, body: client.V1Secret) -> client.V1Secret:
        return await self.call(
            f"POST Secret {namespace}", self.core.create_namespaced_secret(namespace, body)
        )

    async def replace_secret(
        self, namespace: str, name: str, body: client.V1Secret
    ) -> client.V1Secret:
        """PUT: with `metadata.resource_version` set, fails with KubeConflict if it changed."""
        return await self.call(
            f"PUT Secret {namespace}/{name}",
            self.core.replace_namespaced_secret(name, namespace, body),
        )

    async def patch_secret(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> client.V1Secret:
        """Merge-patch a Secret's metadata (labels, owner references)."""
        return await self.call(
            f"PATCH Secret {namespace}/{name}",
            self.core.patch_namespaced_secret(  # type: ignore[call-arg]
                name, namespace, patch, _content_type=_MERGE_PATCH
            ),
        )

    async def delete_secret(self, namespace: str, name: str) -> bool:
        try:
            await self.call(
                f"DELETE Secret {namespace}/{name}",
                self.core.delete_namespaced_secret(name, namespace),
            )
        except KubeNotFound:
            return False
        return True

    # --- custom resources ----------------------------------------------------------------------

    async def patch_resource(
        self, plural: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> None:
        """Merge-patch one of our custom resources (metadata only)."""
        await self.call(
            f"PATCH {plural} {namespace}/{name}",
            self.custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                patch,
                _content_type=_MERGE_PATCH,
            ),
        )

    async def patch_resource_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        """Merge-patch the status subresource of one of our custom resources."""
        await self.call(
            f"PATCH {plural}/status {namespace}/{name}",
            self.custom.patch_namespaced_custom_object_status(  # type: ignore[call-arg]
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                {"status": status},
                _content_type=_MERGE_PATCH,
            ),
        )

    async def get_resource(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self.call(
                f"GET {plural} {namespace}/{name}",
                self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name),
            )
        except KubeNotFound:
            return None
        return found

    async def list_resources(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        """Every object of a kind, in one namespace or (None) the whole cluster."""
        if namespace is None:
            request = self.custom.list_cluster_custom_object(GROUP, VERSION, plural)
        else:
            request = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        found: dict[str, Any] = await self.call(f"LIST {plural}", request)
        items: list[dict[str, Any]] = found.get("items") or []
        return items

    # --- events --------------------------------------------------------------------------------

    async def create_event(self, namespace: str, event: client.CoreV1Event) -> None:
        await self.call(
            f"POST Event {namespace}", self.core.create_namespaced_event(namespace, event)
        )
