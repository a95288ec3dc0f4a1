# SPDX-License-Identifier: Apache-2.0
"""kopf handlers, kept thin: unpack what kopf hands over, call `reconcile`, report the result.

Per kind: create/update/resume reconcile; a finalizer-backed delete applies `deletionPolicy`;
a timer repairs drift and refreshes the status figures. Referenced Secrets (labelled, filtered
server-side) re-trigger the resources that use them through an index. Only resources of this
install are handled: those whose `mailproxy.genropy.org/instance` label names it (or, for the
default install, carry no such label).

Reporting follows the Kubernetes API conventions: a new resource shows Ready=Unknown until its
first reconcile; a failure sets Ready=False with a CamelCase reason and posts *one* Warning per
transition (not per retry); a database outage does not overwrite a more specific reason
(`Conflict` stays `Conflict`). `mailproxy.genropy.org/managed: "false"` pauses reconciliation
(condition ReconciliationPaused), as Strimzi's pause annotation does.
`build_registry` registers everything on a fresh registry: nothing happens at import time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from mail_proxy_operator import reconcile
from mail_proxy_operator.api_keys import ROTATE_ANNOTATION, TENANT_LABEL
from mail_proxy_operator.context import OperatorContext, ResourceRef
from mail_proxy_operator.errors import (
    DatabaseUnavailable,
    InvalidSpec,
    KubernetesUnavailable,
    PermanentReconcileError,
    ReconcileError,
    retry_delay_seconds,
)
from mail_proxy_operator.events import post_event
from mail_proxy_operator.kube_api import KubeApiError
from mail_proxy_operator.secrets import ROLE_API_KEY, WATCH_LABEL
from mail_proxy_operator.specs import GROUP, INSTANCE_LABEL, KINDS, VERSION
from mail_proxy_operator.status import (
    PAUSED,
    failed_status,
    ready_condition,
    ready_status,
    unknown_status,
)

# What kopf hands to handlers as `logger`.
Logger = logging.Logger | logging.LoggerAdapter[Any]
INDEX_IDS = {kind: f"{plural}_by_secret" for kind, (plural, _) in KINDS.items()}
MANAGED_ANNOTATION = f"{GROUP}/managed"
# Failures that say nothing about the resource itself: they never hide a specific reason.
_OUTAGES = (DatabaseUnavailable, KubernetesUnavailable)


def _ctx(memo: Any) -> OperatorContext:
    ctx = memo["ctx"]
    assert isinstance(ctx, OperatorContext)
    return ctx


def _annotations(body: Mapping[str, Any]) -> Mapping[str, str]:
    return body["metadata"].get("annotations") or {}


def _paused(body: Mapping[str, Any]) -> bool:
    return str(_annotations(body).get(MANAGED_ANNOTATION, "")).lower() == "false"


def _set_status(patch: kopf.Patch, current: Mapping[str, Any] | None, new: dict[str, Any]) -> None:
    """Patch only the status fields whose value changes (a timer runs often)."""
    for key, value in new.items():
        if (current or {}).get(key) != value:
            patch.status[key] = value


async def _reconcile(ctx: OperatorContext, ref: ResourceRef, body: kopf.Body, trigger: str) -> Any:
    annotations = _annotations(body)
    ctx.metrics.reconciles.labels(ref.kind, trigger).inc()
    started = time.monotonic()
    try:
        async with ctx.exclusive(ref):
            return await reconcile.reconcile(
                ctx,
                ref,
                body.get("spec"),
                rotation=str(annotations.get(ROTATE_ANNOTATION, "")),
                adopt=annotations.get(reconcile.ADOPT_ANNOTATION),
            )
    finally:
        ctx.metrics.duration.labels(ref.kind).observe(time.monotonic() - started)


def _succeeded(
    ctx: OperatorContext,
    body: kopf.Body,
    patch: kopf.Patch,
    ref: ResourceRef,
    outcome: reconcile.Outcome,
) -> None:
    new = ready_status(
        body.get("status"), generation=ref.generation, message=outcome.message, extra=outcome.status
    )
    _set_status(patch, body.get("status"), new)
    ctx.metrics.set_ready(ref.uid, ref.kind, "True", "Reconciled")


async def _failed(
    ctx: OperatorContext,
    body: kopf.Body,
    patch: kopf.Patch,
    ref: ResourceRef,
    error: ReconcileError,
    logger: Logger,
) -> None:
    """Ready=False with the reason; a Warning only when the reason changes."""
    ctx.metrics.errors.labels(ref.kind, error.reason).inc()
    status = body.get("status")
    current = ready_condition(status) or {}
    if (
        isinstance(error, _OUTAGES)
        and current.get("status") == "False"
        and current.get("reason") not in (error.reason, DatabaseUnavailable.reason)
        and current.get("observedGeneration") == ref.generation
    ):
        return  # keep the specific reason: an outage says nothing new about this resource
    _set_status(
        patch,
        status,
        failed_status(
            status, generation=ref.generation, reason=error.reason, message=error.message
        ),
    )
    ctx.metrics.set_ready(ref.uid, ref.kind, "False", error.reason)
    if current.get("status") != "False" or current.get("reason") != error.reason:
        logger.warning("reconcile failed (%s): %s", error.reason, error.message)
        await post_event(ctx.kube, body, type="Warning", reason=error.reason, message=error.message)


def _kopf_error(error: ReconcileError, retry: int) -> kopf.PermanentError | kopf.TemporaryError:
    if isinstance(error, PermanentReconcileError):
        return kopf.PermanentError(error.message)
    return kopf.TemporaryError(error.message, delay=retry_delay_seconds(error, retry))


def _pause(ctx: OperatorContext, body: kopf.Body, patch: kopf.Patch, ref: ResourceRef) -> None:
    status = body.get("status")
    conditions = (status or {}).get("conditions") or []
    ctx.metrics.set_ready(ref.uid, ref.kind, "Unknown", PAUSED)
    if any(c.get("type") == PAUSED and c.get("status") == "True" for c in conditions):
        return
    new = unknown_status(
        status,
        generation=ref.generation,
        reason=PAUSED,
        message=f'{MANAGED_ANNOTATION} is "false": rows are left as they are',
    )
    _set_status(patch, status, new)


async def reconcile_resource(
    *, body: kopf.Body, patch: kopf.Patch, retry: int, memo: Any, logger: Logger, **_: Any
) -> None:
    """create / update / resume: make the rows match the spec."""
    ctx, ref = _ctx(memo), ResourceRef.from_body(body)
    if _paused(body):
        _pause(ctx, body, patch, ref)
        return
    if ready_condition(body.get("status")) is None:
        # Say at once that it is being looked at: a new resource is Ready=Unknown, not blank.
        first = unknown_status(
            body.get("status"),
            generation=ref.generation,
            reason="Reconciling",
            message="first reconcile",
        )
        try:
            await ctx.kube.patch_resource_status(ref.plural, ref.namespace, ref.name, first)
        except KubeApiError as exc:
            logger.debug("cannot mark %s Ready=Unknown: %s", ref.name, exc)
    try:
        outcome = await _reconcile(ctx, ref, body, "change")
    except ReconcileError as exc:
        await _failed(ctx, body, patch, ref, exc, logger)
        raise _kopf_error(exc, retry) from exc
    was = (ready_condition(body.get("status")) or {}).get("status")
    _succeeded(ctx, body, patch, ref, outcome)
    if outcome.changed or was == "False":
        summary = "; ".join(outcome.changed) or outcome.message
        logger.info("reconciled: %s", summary)
        await post_event(ctx.kube, body, type="Normal", reason="Reconciled", message=summary)


async def repair_resource(
    *, body: kopf.Body, patch: kopf.Patch, memo: Any, logger: Logger, **_: Any
) -> None:
    """Timer: put back rows changed or deleted behind the operator's back; refresh figures."""
    ctx, ref = _ctx(memo), ResourceRef.from_body(body)
    status = body.get("status") or {}
    if body["metadata"].get("deletionTimestamp") or status.get("observedGeneration") != (
        ref.generation
    ):
        return  # a change or delete handler has this generation in hand
    if _paused(body):
        _pause(ctx, body, patch, ref)
        return
    try:
        outcome = await _reconcile(ctx, ref, body, "repair")
    except ReconcileError as exc:
        await _failed(ctx, body, patch, ref, exc, logger)
        return
    was = (ready_condition(status) or {}).get("status")
    _succeeded(ctx, body, patch, ref, outcome)
    if not outcome.changed and was == "True":
        return
    summary = "; ".join(outcome.changed) or outcome.message
    if was == "True":
        # It was in order: someone changed the rows behind the operator's back.
        ctx.metrics.drift_repairs.labels(ref.kind).inc()
        logger.warning("drift repaired: %s", summary)
        await post_event(ctx.kube, body, type="Normal", reason="DriftRepaired", message=summary)
    else:
        logger.info("reconciled: %s", summary)
        await post_event(ctx.kube, body, type="Normal", reason="Reconciled", message=summary)


async def delete_resource(
    *, body: kopf.Body, retry: int, memo: Any, logger: Logger, **_: Any
) -> None:
    """Finalizer: apply deletionPolicy (Delete removes rows, Retain releases them)."""
    ctx, ref = _ctx(memo), ResourceRef.from_body(body)
    ctx.metrics.reconciles.labels(ref.kind, "delete").inc()
    try:
        async with ctx.exclusive(ref):
            done = await reconcile.remove(ctx, ref, body.get("spec"))
    except ReconcileError as exc:
        ctx.metrics.errors.labels(ref.kind, exc.reason).inc()
        if retry == 0 or ctx.announced.get(ref.uid) != exc.reason:
            ctx.announced[ref.uid] = exc.reason
            await post_event(ctx.kube, body, type="Warning", reason=exc.reason, message=exc.message)
        raise _kopf_error(exc, retry) from exc
    ctx.forget(ref)
    ctx.metrics.forget(ref.uid)
    logger.info("deleted: %s", done)


def _index_by_secret(kind: str) -> Callable[..., dict[tuple[str, str], tuple[str, str]]]:
    def index(*, body: kopf.Body, **_: Any) -> dict[tuple[str, str], tuple[str, str]]:
        """(namespace, secret name) -> (kind, resource name), for every Secret it references."""
        try:
            spec = reconcile.parse_spec(kind, body.get("spec"))
        except InvalidSpec:
            return {}
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        return {(namespace, ref.name): (kind, name) for ref in spec.secret_refs()}

    return index


async def secret_changed(
    *, type: str, body: kopf.Body, memo: Any, logger: Logger, **kwargs: Any
) -> None:
    """A watched Secret changed: reconcile again every resource that uses it."""
    if type not in ("ADDED", "MODIFIED", "DELETED"):
        return  # the initial listing: resume handlers reconcile everything anyway
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    labels = meta.get("labels") or {}
    ctx = _ctx(memo)
    targets: set[tuple[str, str]] = set()
    if labels.get(WATCH_LABEL) == ROLE_API_KEY:
        if labels.get(INSTANCE_LABEL, "") != ctx.instance:
            return  # another install's API key: never nudge (or even look at) its Tenants
        if tenant := labels.get(TENANT_LABEL):
            targets.add(("Tenant", tenant))
    for index_id in INDEX_IDS.values():
        for target in kwargs[index_id].get((namespace, name), ()):
            targets.add(target)
    token = f"{name}@{meta.get('resourceVersion', '')}" + ("/deleted" if type == "DELETED" else "")
    for kind, resource in sorted(targets):
        try:
            await reconcile.request_reconcile(
                ctx, kind=kind, namespace=namespace, name=resource, token=token
            )
        except ReconcileError as exc:
            logger.warning("cannot re-trigger %s %s/%s: %s", kind, namespace, resource, exc)
        else:
            logger.debug(
                "Secret %s/%s changed: re-reconciling %s %s", namespace, name, kind, resource
            )


def instance_labels(instance: str) -> dict[str, Any]:
    """kopf's label filter for this install: its name, or (default install) no label at all."""
    return {INSTANCE_LABEL: instance or kopf.ABSENT}


def build_registry(
    login: Callable[..., kopf.ConnectionInfo], *, repair_interval_seconds: float, instance: str = ""
) -> kopf.OperatorRegistry:
    """Every handler of the operator on a fresh registry; `login` supplies API credentials."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry, id="login")(login)
    labels = instance_labels(instance)
    for kind, (plural, _) in KINDS.items():
        resource = (GROUP, VERSION, plural)
        options: dict[str, Any] = {"registry": registry, "labels": labels}
        kopf.on.resume(*resource, id="reconcile", **options)(reconcile_resource)
        kopf.on.create(*resource, id="reconcile", **options)(reconcile_resource)
        kopf.on.update(*resource, id="reconcile", **options)(reconcile_resource)
        kopf.on.delete(*resource, id="delete", **options)(delete_resource)
        kopf.timer(
            *resource,
            id="repair",
            interval=repair_interval_seconds,
            initial_delay=repair_interval_seconds,
            **options,
        )(repair_resource)
        kopf.index(*resource, id=INDEX_IDS[kind], **options)(_index_by_secret(kind))
    kopf.on.event("v1", "secrets", registry=registry, id="secret")(secret_changed)
    return registry
