# SPDX-License-Identifier: Apache-2.0
"""Kubernetes Events about our resources, posted through the official client.

Callers decide *when* (once per Ready transition, see `handlers`); this module only says it.
A failure to post is logged and swallowed: an event is news, never a reason to fail a reconcile.
Messages come from `ReconcileError`s and outcomes, which never hold a secret value.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from kubernetes_asyncio.client import CoreV1Event, V1EventSource, V1ObjectMeta, V1ObjectReference

from mail_proxy_operator.kube_api import KubeApi, KubeApiError

log = logging.getLogger("mail_proxy_operator.events")
COMPONENT = "mail-proxy-operator"
MAX_MESSAGE_CHARS = 1024


async def post_event(
    kube: KubeApi,
    body: Mapping[str, Any],
    *,
    type: Literal["Normal", "Warning"],
    reason: str,
    message: str,
) -> None:
    """One core/v1 Event on the object `body` describes (kind, name, namespace, uid)."""
    meta = body["metadata"]
    now = datetime.now(UTC)
    event = CoreV1Event(
        metadata=V1ObjectMeta(
            name=f"{meta['name']}.{uuid.uuid4().hex[:16]}", namespace=meta["namespace"]
        ),
        involved_object=V1ObjectReference(
            api_version=body.get("apiVersion"),
            kind=body.get("kind"),
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta.get("uid"),
            resource_version=meta.get("resourceVersion"),
        ),
        type=type,
        reason=reason,
        message=message[:MAX_MESSAGE_CHARS],
        source=V1EventSource(component=COMPONENT),
        reporting_component=COMPONENT,
        first_timestamp=now,
        last_timestamp=now,
        count=1,
    )
    try:
        await kube.create_event(meta["namespace"], event)
    except KubeApiError as exc:
        log.warning(
            "cannot post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], exc
        )
