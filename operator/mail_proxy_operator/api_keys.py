# SPDX-License-Identifier: BUSL-1.1
"""Tenant API keys: generated into a Secret the operator owns; Postgres keeps only the hash.

The Secret is the source of truth: when it holds a key, the stored hash follows it. A new key is
generated when the Secret is missing (deleted to rotate) or when the Tenant's
`mailproxy.genropy.org/rotate-api-key` annotation differs from the value recorded on the Secret;
key and recorded value are written in one Secret update, so a crash never rotates twice.

The Secret carries the install's `mailproxy.genropy.org/instance` label (none for the unlabelled
install): another install sharing the cluster never takes it over, deletes it, or reacts to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes_asyncio.client import V1ObjectMeta, V1OwnerReference, V1Secret

from mail_proxy.tokens import new_token
from mail_proxy_operator.context import ResourceRef
from mail_proxy_operator.errors import OwnedElsewhere
from mail_proxy_operator.kube_api import KubeApi, KubeApiError, KubeConflict
from mail_proxy_operator.secrets import (
    ROLE_API_KEY,
    WATCH_LABEL,
    decode_value,
    encode_value,
    kube_failure,
)
from mail_proxy_operator.specs import GROUP, INSTANCE_LABEL

KEY_FIELD = "api-key"
TENANT_ID_FIELD = "tenant-id"
TENANT_LABEL = f"{GROUP}/tenant"
ROTATE_ANNOTATION = f"{GROUP}/rotate-api-key"


@dataclass(frozen=True)
class ApiKey:
    """The tenant's key as its Secret holds it; `rotated` is True when written just now."""

    secret_name: str
    key: str
    rotated: bool


def _owned_by(secret: V1Secret, tenant: ResourceRef, instance: str) -> bool:
    labels = secret.metadata.labels or {}
    if labels.get(WATCH_LABEL) != ROLE_API_KEY or labels.get(TENANT_LABEL) != tenant.name:
        return False
    if INSTANCE_LABEL in labels:
        return labels[INSTANCE_LABEL] == instance
    # Written before Secrets carried the instance label: ours only while this Tenant owns it.
    return not instance or any(o.uid == tenant.uid for o in secret.metadata.owner_references or [])


def _body(
    tenant: ResourceRef,
    instance: str,
    name: str,
    tenant_id: str,
    key: str,
    rotation: str,
    version: str | None,
) -> V1Secret:
    owner = tenant.owner_reference()
    labels = {
        WATCH_LABEL: ROLE_API_KEY,
        TENANT_LABEL: tenant.name,
        "app.kubernetes.io/managed-by": "mail-proxy-operator",
    }
    if instance:
        labels[INSTANCE_LABEL] = instance
    metadata = V1ObjectMeta(
        name=name,
        namespace=tenant.namespace,
        labels=labels,
        annotations={ROTATE_ANNOTATION: rotation},
        owner_references=[
            V1OwnerReference(
                api_version=owner["apiVersion"],
                kind=owner["kind"],
                name=owner["name"],
                uid=owner["uid"],
                controller=True,
            )
        ],
        resource_version=version,
    )
    return V1Secret(
        api_version="v1",
        kind="Secret",
        type="Opaque",
        metadata=metadata,
        data={KEY_FIELD: encode_value(key), TENANT_ID_FIELD: encode_value(tenant_id)},
    )


async def ensure_api_key(
    kube: KubeApi,
    *,
    tenant: ResourceRef,
    instance: str,
    secret_name: str,
    tenant_id: str,
    rotation: str,
) -> ApiKey:
    """The tenant's current key, generating (and writing) a new one when needed."""
    for _ in range(3):  # a concurrent writer makes us read again
        try:
            secret = await kube.get_secret(tenant.namespace, secret_name)
        except KubeApiError as exc:
            raise kube_failure(exc) from exc
        if secret is not None and not _owned_by(secret, tenant, instance):
            raise OwnedElsewhere(
                f"Secret '{secret_name}' exists and does not belong to Tenant "
                f"'{tenant.name}'; delete it or set spec.apiKeySecretName"
            )
        if secret is not None:
            key = decode_value(secret, KEY_FIELD)
            recorded = (secret.metadata.annotations or {}).get(ROTATE_ANNOTATION, "")
            owners = secret.metadata.owner_references or []
            if key and recorded == rotation and any(o.uid == tenant.uid for o in owners):
                return ApiKey(secret_name, key, rotated=False)
            if key and recorded == rotation:
                # Adopted (the Tenant was re-created after a Retain): keep the key, own it again.
                try:
                    await _write(
                        kube, tenant, instance, secret_name, tenant_id, key, rotation, secret
                    )
                except KubeConflict:
                    continue
                return ApiKey(secret_name, key, rotated=False)
        key = new_token()
        try:
            await _write(kube, tenant, instance, secret_name, tenant_id, key, rotation, secret)
        except KubeConflict:
            continue
        return ApiKey(secret_name, key, rotated=True)
    raise kube_failure(
        KubeApiError(409, "Conflict", f"Secret '{secret_name}' keeps changing under the operator")
    )


async def _write(
    kube: KubeApi,
    tenant: ResourceRef,
    instance: str,
    name: str,
    tenant_id: str,
    key: str,
    rotation: str,
    current: V1Secret | None,
) -> None:
    try:
        if current is None:
            await kube.create_secret(
                tenant.namespace, _body(tenant, instance, name, tenant_id, key, rotation, None)
            )
        else:
            version = current.metadata.resource_version
            await kube.replace_secret(
                tenant.namespace,
                name,
                _body(tenant, instance, name, tenant_id, key, rotation, version),
            )
    except KubeConflict:
        raise
    except KubeApiError as exc:
        raise kube_failure(exc) from exc


async def delete_api_key(
    kube: KubeApi, *, tenant: ResourceRef, instance: str, secret_name: str
) -> None:
    """Delete the tenant's key Secret (deletionPolicy Delete), if it is still ours."""
    try:
        secret = await kube.get_secret(tenant.namespace, secret_name)
        if secret is not None and _owned_by(secret, tenant, instance):
            await kube.delete_secret(tenant.namespace, secret_name)
    except KubeApiError as exc:
        raise kube_failure(exc) from exc


async def release_api_key(
    kube: KubeApi, *, tenant: ResourceRef, instance: str, secret_name: str
) -> None:
    """Drop the owner reference (deletionPolicy Retain) so garbage collection keeps the key."""
    try:
        secret = await kube.get_secret(tenant.namespace, secret_name)
        if secret is None or not _owned_by(secret, tenant, instance):
            return
        owners = [
            {"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid}
            for o in secret.metadata.owner_references or []
            if o.uid != tenant.uid
        ]
        await kube.patch_secret(
            tenant.namespace, secret_name, {"metadata": {"ownerReferences": owners or None}}
        )
    except KubeApiError as exc:
        raise kube_failure(exc) from exc
