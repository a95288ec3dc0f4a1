# SPDX-License-Identifier: Apache-2.0
"""kopf handlers, kept thin: unpack what kopf hands over, call `reconcile`, report the result.

Per kind: create/update/resume reconcile; a finalizer-backed delete applies `deletionPolicy`;
a timer repairs drift and refreshes the status figures. Referenced Secrets (labelled, filtered
server-side) re-trigger the resources that use them through an index. Failures set
Ready=False, post a Warning event, and become kopf's temporary (back-off) or permanent errors.
`build_registry` registers everything on a fresh registry: nothing happens at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from mail_proxy_operator import reconcile
from mail_proxy_operator.api_keys import ROTATE_ANNOTATION, TENANT_LABEL
from mail_proxy_operator.context import OperatorContext, ResourceRef
from mail_proxy_operator.errors import (
    InvalidSpec,
    PermanentReconcileError,
    ReconcileError,
    retry_delay_seconds,
)
from mail_proxy_operator.secrets import ROLE_API_KEY, WATCH_LABEL
from mail_proxy_operator.specs import GROUP, KINDS, VERSION
from mail_proxy_operator.status import failed_status, ready_condition, ready_status

# What kopf hands to handlers as `logger`.
Logger = logging.Logger | logging.LoggerAdapter[Any]
INDEX_IDS = {kind: f"{plural}_by_secret" for kind, (plural, _) in KINDS.items()}


def _ctx(memo: Any) -> OperatorContext:
    ctx = memo["ctx"]
    assert isinstance(ctx, OperatorContext)
    return ctx


def _rotation(body: Mapping[str, Any]) -> str:
    return str((body["metadata"].get("annotations") or {}).get(ROTATE_ANNOTATION, ""))


def _set_status(patch: kopf.Patch, current: Mapping[str, Any] | None, new: dict[str, Any]) -> None:
    """Patch only the status fields whose value changes (a timer runs often)."""
    for key, value in new.items():
        if (current or {}).get(key) != value:
            patch.status[key] = value


def _succeeded(
    body: kopf.Body, patch: kopf.Patch, ref: ResourceRef, outcome: reconcile.Outcome
) -> None:
    new = ready_status(
        body.get("status"),
        generation=ref.generation,
        message=outcome.message,
        extra=outcome.status,
    )
    _set_status(patch, body.get("status"), new)


def _failed(
    body: kopf.Body, patch: kopf.Patch, ref: ResourceRef, error: ReconcileError, announce: bool
) -> None:
    new = failed_status(
        body.get("status"), generation=ref.generation, reason=error.reason, message=error.message
    )
    _set_status(patch, body.get("status"), new)
    if announce:
        kopf.event(body, type="Warning", reason=error.reason, message=error.message)


def _kopf_error(error: ReconcileError, retry: int) -> kopf.PermanentError | kopf.TemporaryError:
    if isinstance(error, PermanentReconcileError):
        return kopf.PermanentError(error.message)
    return kopf.TemporaryError(error.message, delay=retry_delay_seconds(error, retry))


async def reconcile_resource(
    *, body: kopf.Body, patch: kopf.Patch, retry: int, memo: Any, logger: Logger, **_: Any
) -> None:
    """create / update / resume: make the rows match the spec."""
    ctx, ref = _ctx(memo), ResourceRef.from_body(body)
    try:
        async with ctx.exclusive(ref):
            outcome = await reconcile.reconcile(
                ctx, ref, body.get("spec"), rotation=_rotation(body)
            )
    except ReconcileError as exc:
        _failed(body, patch, ref, exc, announce=True)
        raise _kopf_error(exc, retry) from exc
    _succeeded(body, patch, ref, outcome)
    if outcome.changed:
        summary = "; ".join(outcome.changed)
        logger.info("reconciled: %s", summary)
        kopf.event(body, type="Normal", reason="Reconciled", message=summary)


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
    try:
        async with ctx.exclusive(ref):
            outcome = await reconcile.reconcile(
                ctx, ref, body.get("spec"), rotation=_rotation(body)
            )
    except ReconcileError as exc:
        ready = ready_condition(status) or {}
        # Warn once per new failure, not at every tick.
        announce = ready.get("status") != "False" or ready.get("reason") != exc.reason
        _failed(body, patch, ref, exc, announce=announce)
        if announce:
            logger.warning("reconcile failed (%s): %s", exc.reason, exc.message)
        return
    _succeeded(body, patch, ref, outcome)
    if not outcome.changed:
        return
    summary = "; ".join(outcome.changed)
    if (ready_condition(status) or {}).get("status") == "True":
        # It was in order: someone changed the rows behind the operator's back.
        logger.warning("drift repaired: %s", summary)
        kopf.event(body, type="Normal", reason="DriftRepaired", message=summary)
    else:
        logger.info("reconciled: %s", summary)
        kopf.event(body, type="Normal", reason="Reconciled", message=summary)


async def delete_resource(
    *, body: kopf.Body, retry: int, memo: Any, logger: Logger, **_: Any
) -> None:
    """Finalizer: apply deletionPolicy (Delete removes rows, Retain releases them)."""
    ctx, ref = _ctx(memo), ResourceRef.from_body(body)
    try:
        async with ctx.exclusive(ref):
            done = await reconcile.remove(ctx, ref, body.get("spec"))
    except ReconcileError as exc:
        kopf.event(body, type="Warning", reason=exc.reason, message=exc.message)
        raise _kopf_error(exc, retry) from exc
    ctx.forget(ref)
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
    targets: set[tuple[str, str]] = set()
    if labels.get(WATCH_LABEL) == ROLE_API_KEY:
        if tenant := labels.get(TENANT_LABEL):
            targets.add(("Tenant", tenant))
    for index_id in INDEX_IDS.values():
        for target in kwargs[index_id].get((namespace, name), ()):
            targets.add(target)
    token = f"{name}@{meta.get('resourceVersion', '')}" + ("/deleted" if type == "DELETED" else "")
    for kind, resource in sorted(targets):
        try:
            await reconcile.request_reconcile(
                _ctx(memo), kind=kind, namespace=namespace, name=resource, token=token
            )
        except ReconcileError as exc:
            logger.warning("cannot re-trigger %s %s/%s: %s", kind, namespace, resource, exc)
        else:
            logger.debug(
                "Secret %s/%s changed: re-reconciling %s %s", namespace, name, kind, resource
            )


async def database_probe(*, memo: Any, **_: Any) -> str:
    """Liveness: Postgres answers (the endpoint fails while it does not)."""
    async with _ctx(memo).pool.acquire(timeout=5) as conn:
        await conn.fetchval("SELECT 1")
    return "ok"


def build_registry(
    login: Callable[..., kopf.ConnectionInfo], *, repair_interval_seconds: float
) -> kopf.OperatorRegistry:
    """Every handler of the operator on a fresh registry; `login` supplies API credentials."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry, id="login")(login)
    kopf.on.probe(registry=registry, id="database")(database_probe)
    for kind, (plural, _) in KINDS.items():
        resource = (GROUP, VERSION, plural)
        kopf.on.resume(*resource, registry=registry, id="reconcile")(reconcile_resource)
        kopf.on.create(*resource, registry=registry, id="reconcile")(reconcile_resource)
        kopf.on.update(*resource, registry=registry, id="reconcile")(reconcile_resource)
        kopf.on.delete(*resource, registry=registry, id="delete")(delete_resource)
        kopf.timer(
            *resource,
            registry=registry,
            id="repair",
            interval=repair_interval_seconds,
            initial_delay=repair_interval_seconds,
        )(repair_resource)
        kopf.index(*resource, registry=registry, id=INDEX_IDS[kind])(_index_by_secret(kind))
    kopf.on.event("v1", "secrets", registry=registry, id="secret")(secret_changed)
    return registry
