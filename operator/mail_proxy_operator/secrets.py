# SPDX-License-Identifier: Apache-2.0
"""Reading the Secrets a resource references, and marking them so the operator watches them.

The operator watches only Secrets labelled `mailproxy.genropy.org/watch` (a server-side label
selector), never all of them: a Secret it reads gets `watch=referenced`, an API-key Secret it
writes gets `watch=api-key`. Values go straight to the caller, never to a log or an error.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from kubernetes_asyncio.client import V1Secret

from mail_proxy_operator.errors import KubernetesUnavailable, SecretNotReady
from mail_proxy_operator.kube_api import KubeApi, KubeApiError
from mail_proxy_operator.specs import GROUP, SecretKeyRef

WATCH_LABEL = f"{GROUP}/watch"
ROLE_REFERENCED = "referenced"
ROLE_API_KEY = "api-key"


def kube_failure(exc: KubeApiError) -> KubernetesUnavailable:
    return KubernetesUnavailable(f"Kubernetes API call failed: {exc}")


def decode_value(secret: V1Secret, key: str) -> str | None:
    """The text under `key` of a Secret (base64 `data`), or None when absent or not text."""
    raw = (secret.data or {}).get(key)
    if raw is None:
        return None
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def encode_value(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


async def read_secret_values(
    kube: KubeApi, namespace: str, refs: Iterable[SecretKeyRef]
) -> dict[tuple[str, str], str]:
    """The value of every reference (one GET per Secret); missing Secret or key: SecretNotReady."""
    wanted = list(refs)
    values: dict[tuple[str, str], str] = {}
    for name in sorted({ref.name for ref in wanted}):
        try:
            secret = await kube.get_secret(namespace, name)
        except KubeApiError as exc:
            raise kube_failure(exc) from exc
        if secret is None:
            raise SecretNotReady(f"Secret '{name}' not found in namespace '{namespace}'")
        await _ensure_watched(kube, namespace, secret)
        for ref in wanted:
            if ref.name != name:
                continue
            value = decode_value(secret, ref.key)
            if value is None:
                raise SecretNotReady(f"Secret '{name}' has no text key '{ref.key}'")
            values[ref.address] = value
    return values


async def _ensure_watched(kube: KubeApi, namespace: str, secret: V1Secret) -> None:
    """Label a referenced Secret so its changes reach the operator's (filtered) watch."""
    labels = secret.metadata.labels or {}
    if WATCH_LABEL in labels:
        return
    name = secret.metadata.name
    try:
        await kube.patch_secret(
            namespace, name, {"metadata": {"labels": {WATCH_LABEL: ROLE_REFERENCED}}}
        )
    except KubeApiError as exc:
        raise kube_failure(exc) from exc
