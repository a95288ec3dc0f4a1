# SPDX-License-Identifier: Apache-2.0
"""Making Postgres match a resource, one way (Kubernetes -> rows), free of kopf.

`reconcile` is idempotent and writes only what differs from the spec, so the same call serves
create, update, resume and the drift-repair timer; it returns what it changed and the status
fields to show. `remove` honours `deletionPolicy` when the resource goes away. Secrets are read
from Kubernetes on every call and compared with the stored ones by decrypting them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from pydantic import ValidationError

from mail_proxy.db import accounts as db_accounts
from mail_proxy.db import instance as db_instance
from mail_proxy.db import managed, rotate
from mail_proxy.db import tenants as db_tenants
from mail_proxy.db.notify import RELOAD_INBOUND_CHANNEL, notify
from mail_proxy.db.pool import DATABASE_ERRORS
from mail_proxy.encryption import SecretBox
from mail_proxy.errors import EncryptionError, UnknownEncryptionKey
from mail_proxy.large_files.policy import link_base_problem
from mail_proxy.redact import open_client_auth, seal_client_auth
from mail_proxy.tokens import hash_token
from mail_proxy_operator import api_keys
from mail_proxy_operator.context import OperatorContext, ResourceRef
from mail_proxy_operator.errors import (
    AccountUnhealthy,
    AdoptionRefused,
    DatabaseUnavailable,
    DependentsExist,
    EncryptionKeyUnknown,
    InvalidSpec,
    KubernetesUnavailable,
    OwnedElsewhere,
    TenantNotReady,
    WrongNamespace,
)
from mail_proxy_operator.kube_api import KubeApiError, KubeNotFound
from mail_proxy_operator.secrets import read_secret_values
from mail_proxy_operator.specs import (
    GROUP,
    KINDS,
    MailProxyInstanceSpec,
    SmtpAccountSpec,
    TenantSpec,
)
from mail_proxy_operator.status import figures_status

# Changing this annotation on a resource makes kopf hand it to the update handler again.
RECONCILE_REQUEST_ANNOTATION = f"{GROUP}/reconcile-request"
# Taking an unmanaged row (REST-created, or released by another resource) must be asked for:
# the annotation's value is the row's id (tenant id, or account id).
ADOPT_ANNOTATION = f"{GROUP}/adopt"
# A database call that takes longer than this is an outage, not a slow query.
DB_TIMEOUT_SECONDS = 30.0
T = TypeVar("T")
Spec = TenantSpec | SmtpAccountSpec | MailProxyInstanceSpec


@dataclass(frozen=True)
class Outcome:
    """What one reconcile changed (words for events and logs) and the status fields to show."""

    changed: tuple[str, ...]
    status: dict[str, Any] = field(default_factory=dict)
    message: str = "rows match the spec"


def parse_spec(kind: str, spec: Mapping[str, Any] | None) -> Spec:
    """The spec model of a kind; what the CRD schema let through but the model refuses is
    InvalidSpec (the two should agree, and a unit test checks they do)."""
    model = KINDS[kind][1]
    try:
        return model.model_validate(dict(spec or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidSpec(f"spec cannot be used: {problems}") from exc


async def _db(pool: asyncpg.Pool, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run `work` in one transaction; Postgres failures become DatabaseUnavailable."""

    async def run() -> T:
        async with pool.acquire(timeout=DB_TIMEOUT_SECONDS) as conn, conn.transaction():
            return await work(conn)

    try:
        return await asyncio.wait_for(run(), DB_TIMEOUT_SECONDS)
    except DATABASE_ERRORS as exc:
        raise DatabaseUnavailable(f"database error: {type(exc).__name__}: {exc}") from exc


def _check_owner(
    row: Mapping[str, Any] | None, ref: ResourceRef, what: str, *, adopt: str | None = None
) -> None:
    """Refuse a row managed by another resource, or an unmanaged one taken unasked.

    An unmanaged row may be taken by the resource that released it (`released_by`, written by
    deletionPolicy Retain) or when the resource's `mailproxy.genropy.org/adopt` annotation names
    it (`adopt` is the row id then); anything else would let any namespace take over a tenant.
    """
    if row is None:
        return
    owner = row["managed_by"]
    if owner:
        if owner != ref.managed_by:
            raise OwnedElsewhere(f"{what} is already managed by {owner}")
        return
    if adopt is not None or row.get("released_by") == ref.managed_by:
        return
    released = row.get("released_by")
    origin = f"released by {released}" if released else "created through the REST API"
    raise AdoptionRefused(
        f"{what} exists and is not managed ({origin}); to take it over, annotate this "
        f'{ref.kind} with {ADOPT_ANNOTATION}: "<its id>"'
    )


def _unknown_key(exc: UnknownEncryptionKey) -> EncryptionKeyUnknown:
    return EncryptionKeyUnknown(
        f"stored secrets are encrypted with key id {exc.key_id}, which the operator does not "
        "hold (key rotated elsewhere?): add it to the encryption-key Secret; nothing is "
        "rewritten meanwhile"
    )


def _secret_equal(box: SecretBox, stored: str | None, wanted: str | None) -> bool:
    """Same plaintext; a value under an older key is re-sealed by the background rotation
    (`keyring.reencrypt_loop`), not reported as drift here."""
    try:
        return box.decrypt(stored) == wanted
    except UnknownEncryptionKey as exc:
        raise _unknown_key(exc) from exc
    except EncryptionError:
        return False  # unreadable (corrupt): write it again


def _auth_equal(box: SecretBox, stored: dict[str, Any] | None, wanted: Any) -> bool:
    try:
        return bool(open_client_auth(box, stored) == wanted)
    except UnknownEncryptionKey as exc:
        raise _unknown_key(exc) from exc
    except EncryptionError:
        return False


def _differences(
    row: Mapping[str, Any],
    desired: Mapping[str, Any],
    secret_fields: Mapping[str, Callable[..., bool]],
) -> list[str]:
    """Names of the columns whose stored value is not the desired one."""
    names = []
    for name, wanted in desired.items():
        compare = secret_fields.get(name)
        same = compare(row[name], wanted) if compare else row[name] == wanted
        if not same:
            names.append(name)
    return names


# --- Tenant ----------------------------------------------------------------------------------


async def _tenant(
    ctx: OperatorContext, ref: ResourceRef, spec: TenantSpec, rotation: str, adopt: str | None
) -> Outcome:
    tenant_id = spec.row_id(ref.name)
    if spec.large_file is not None:
        config = spec.large_file.model_dump()
        if problem := link_base_problem(config, ctx.download_base_url):
            raise InvalidSpec(problem.replace("public_base_url", "largeFile.publicBaseUrl", 1))
    values = await read_secret_values(ctx.kube, ref.namespace, spec.secret_refs())
    desired = spec.desired_fields(values)
    changed: list[str] = []

    async def write_row(conn: asyncpg.Connection) -> None:
        row = await db_tenants.get_tenant(conn, tenant_id=tenant_id)
        _check_owner(
            row, ref, f"tenant '{tenant_id}'", adopt=tenant_id if adopt == tenant_id else None
        )
        compare = {"client_auth": lambda s, w: _auth_equal(ctx.box, s, w)}
        if row is not None and row["managed_by"] == ref.managed_by:
            diff = _differences(row, desired, compare)
            if not diff:
                return
            changed.append(f"tenant row updated ({', '.join(diff)})")
        else:
            changed.append("tenant row written" if row is None else "tenant row adopted")
        fields = {**desired, "client_auth": seal_client_auth(ctx.box, desired["client_auth"])}
        await db_tenants.upsert_tenant(
            conn, tenant_id=tenant_id, fields=fields, api_key_hash=None, managed_by=ref.managed_by
        )

    await _db(ctx.pool, write_row)
    secret_name = spec.api_key_secret(ref.name)
    key = await api_keys.ensure_api_key(
        ctx.kube,
        tenant=ref,
        instance=ctx.instance,
        secret_name=secret_name,
        tenant_id=tenant_id,
        rotation=rotation,
    )
    if key.rotated:
        changed.append(f"API key generated into Secret '{secret_name}'")

    async def sync_key(conn: asyncpg.Connection) -> managed.Figures:
        row = await db_tenants.get_tenant(conn, tenant_id=tenant_id)
        wanted = hash_token(key.key)
        if row is not None and (row["api_key_hash"] != wanted or row["api_key_expires_at"]):
            # The previous key keeps working for the grace period: clients reload meanwhile.
            grace = ctx.api_key_grace_seconds
            await db_tenants.replace_api_key_with_grace(
                conn,
                tenant_id=tenant_id,
                key_hash=wanted,
                previous_valid_until=int(time.time() + grace) if grace > 0 else None,
            )
            if not key.rotated:
                changed.append("API key hash set from its Secret")
        return await managed.tenant_figures(conn, tenant_id=tenant_id)

    figures = await _db(ctx.pool, sync_key)
    status = {
        "tenantId": tenant_id,
        "apiKeySecret": secret_name,
        "accounts": figures.children,
        **figures_status(figures),
    }
    return Outcome(tuple(changed), status, f"tenant '{tenant_id}' matches the spec")


# --- SmtpAccount -----------------------------------------------------------------------------


async def _account(
    ctx: OperatorContext, ref: ResourceRef, spec: SmtpAccountSpec, adopt: str | None
) -> Outcome:
    account_id = spec.row_id(ref.name)
    tenant_owner = f"Tenant/{ref.namespace}/{spec.tenant_ref.name}"

    async def find_tenant(conn: asyncpg.Connection) -> str | None:
        return await managed.tenant_id_managed_by(conn, managed_by=tenant_owner)

    tenant_id = await _db(ctx.pool, find_tenant)
    if tenant_id is None:
        raise TenantNotReady(
            f"Tenant '{spec.tenant_ref.name}' has no row yet: create it or wait until it is Ready"
        )
    values = await read_secret_values(ctx.kube, ref.namespace, spec.secret_refs())
    desired = spec.desired_fields(values)
    changed: list[str] = []

    async def write_row(conn: asyncpg.Connection) -> managed.Figures:
        removed = await managed.delete_managed_except(
            conn, managed_by=ref.managed_by, tenant_id=tenant_id, account_id=account_id
        )
        if removed:
            changed.append("account row of a previous tenant removed")
        row = await db_accounts.get_account(conn, tenant_id=tenant_id, account_id=account_id)
        # The tenant is already this namespace's: its unmanaged accounts may be taken unless
        # another resource released them.
        taken = adopt == account_id or (row is not None and not row.get("released_by"))
        _check_owner(
            row,
            ref,
            f"account '{account_id}' of tenant '{tenant_id}'",
            adopt=account_id if taken else None,
        )
        compare = {
            "password": lambda s, w: _secret_equal(ctx.box, s, w),
            "imap_password": lambda s, w: _secret_equal(ctx.box, s, w),
        }
        diff = _differences(row, desired, compare) if row is not None else []
        if row is None or row["managed_by"] != ref.managed_by or diff:
            fields = {
                **desired,
                "password": ctx.box.encrypt(desired["password"]),
                "imap_password": ctx.box.encrypt(desired["imap_password"]),
            }
            await db_accounts.upsert_account(
                conn,
                tenant_id=tenant_id,
                account_id=account_id,
                fields=fields,
                managed_by=ref.managed_by,
            )
            if row is None:
                changed.append("account row written")
            elif diff:
                changed.append(f"account row updated ({', '.join(diff)})")
            else:
                changed.append("account row adopted")
            if desired["is_pec_account"] or (row is not None and row["is_pec_account"]):
                await _reload_mailboxes(conn)
        health.extend(
            await managed.account_health(conn, tenant_id=tenant_id, account_id=account_id)
        )
        return await managed.account_figures(conn, tenant_id=tenant_id, account_id=account_id)

    health: list[str | None] = []
    figures = await _db(ctx.pool, write_row)
    if health[0] == "unhealthy":
        raise AccountUnhealthy(
            f"account '{account_id}' is unhealthy, its messages are held: "
            f"{health[1] or 'no reason recorded'}"
        )
    status = {
        "tenantId": tenant_id,
        "accountId": account_id,
        "limits": spec.limits.summary(),
        **figures_status(figures),
    }
    return Outcome(tuple(changed), status, f"account '{account_id}' matches the spec")


async def _reload_mailboxes(conn: asyncpg.Connection) -> None:
    """Bounce and PEC pollers in every sender re-read their mailboxes now (not in 30 s)."""
    await notify(conn, RELOAD_INBOUND_CHANNEL)


# --- MailProxyInstance -----------------------------------------------------------------------


def _config_equal(box: SecretBox, stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    opened = dict(stored)
    if "client_sync_auth" in opened:
        try:
            opened["client_sync_auth"] = open_client_auth(box, opened["client_sync_auth"])
        except UnknownEncryptionKey as exc:
            raise _unknown_key(exc) from exc
        except EncryptionError:
            return False
    return opened == dict(wanted)


async def _instance(ctx: OperatorContext, ref: ResourceRef, spec: MailProxyInstanceSpec) -> Outcome:
    if ref.namespace != ctx.instance_namespace:
        raise WrongNamespace(
            f"this install takes its MailProxyInstance from namespace "
            f"'{ctx.instance_namespace}' only (one per install)"
        )
    values = await read_secret_values(ctx.kube, ref.namespace, spec.secret_refs())
    desired = spec.desired_fields(values)
    config = spec.desired_config(values)
    changed: list[str] = []

    async def write_row(conn: asyncpg.Connection) -> managed.Figures:
        row = await db_instance.get_instance(conn)
        # The singleton row always exists (the migration creates it, unmanaged): the install
        # pins its MailProxyInstance to one namespace above, so taking it needs no annotation.
        _check_owner(row, ref, "the instance", adopt="instance")
        compare = {"bounce_imap_password": lambda s, w: _secret_equal(ctx.box, s, w)}
        diff = _differences(row, desired, compare)
        if diff:
            password = ctx.box.encrypt(desired["bounce_imap_password"])
            await db_instance.update_instance(
                conn, fields={**desired, "bounce_imap_password": password}
            )
            changed.append(f"instance settings updated ({', '.join(diff)})")
            if any(name.startswith("bounce_") for name in diff):
                await _reload_mailboxes(conn)
        mine = row["managed_by"] == ref.managed_by
        if not mine or not _config_equal(ctx.box, row["config"] or {}, config):
            sealed = dict(config)
            if "client_sync_auth" in sealed:
                sealed["client_sync_auth"] = seal_client_auth(ctx.box, sealed["client_sync_auth"])
            await managed.claim_instance(conn, config=sealed, managed_by=ref.managed_by)
            changed.append("instance configuration written" if mine else "instance claimed")
        stale.append(await rotate.count_stale(conn, box=ctx.box))
        return await managed.instance_figures(conn)

    stale: list[int] = []
    figures = await _db(ctx.pool, write_row)
    status = {
        "tenants": figures.children,
        "pending": figures.pending,
        "sentLastHour": figures.sent_last_hour,
        "encryptionKeyId": ctx.box.primary_key_id,
        "secretsUnderOldKeys": stale[0],
    }
    return Outcome(tuple(changed), status, "instance settings match the spec")


# --- entry points ----------------------------------------------------------------------------


async def reconcile(
    ctx: OperatorContext,
    ref: ResourceRef,
    spec: Mapping[str, Any] | None,
    *,
    rotation: str = "",
    adopt: str | None = None,
) -> Outcome:
    """Make the rows of `ref` match `spec`; `rotation` is the Tenant's rotate-api-key value,
    `adopt` the row id its adopt annotation names (if any)."""
    parsed = parse_spec(ref.kind, spec)
    if isinstance(parsed, TenantSpec):
        return await _tenant(ctx, ref, parsed, rotation, adopt)
    if isinstance(parsed, SmtpAccountSpec):
        return await _account(ctx, ref, parsed, adopt)
    return await _instance(ctx, ref, parsed)


async def remove(ctx: OperatorContext, ref: ResourceRef, spec: Mapping[str, Any] | None) -> str:
    """Apply the deletion policy for a resource being deleted; says what was done.

    Reads the raw spec so that a resource whose spec no longer parses can still go away.
    """
    raw = dict(spec or {})
    retain = raw.get("deletionPolicy") == "Retain"
    owner = ref.managed_by

    kept_for: list[int] = []

    async def rows(conn: asyncpg.Connection) -> int:
        if ref.kind == "Tenant" and not retain:
            # The FK cascade would take every account with the tenant: accounts still managed
            # by an SmtpAccount go first (their own policy), and accounts an SmtpAccount
            # retained keep the tenant row alive (released, not deleted).
            holders, retained = await managed.tenant_dependents(conn, managed_by=owner)
            if holders:
                raise DependentsExist(
                    f"waiting for {', '.join(holders)} to be deleted first (each applies its "
                    "own deletionPolicy)"
                )
            if retained:
                kept_for.append(retained)
                return await managed.release_managed(conn, managed_by=owner)
        if ref.kind == "MailProxyInstance" and not retain:
            row = await db_instance.get_instance(conn)
            if row["managed_by"] != owner:
                return 0
            defaults = MailProxyInstanceSpec().desired_fields({})
            await db_instance.update_instance(conn, fields=defaults)
            await managed.claim_instance(conn, config={}, managed_by=None)
            return 1
        if retain:
            return await managed.release_managed(conn, managed_by=owner)
        return await managed.delete_managed(conn, managed_by=owner)

    count = await _db(ctx.pool, rows)
    if ref.kind == "Tenant":
        secret_name = raw.get("apiKeySecretName") or f"{ref.name}-api-key"
        if retain:
            await api_keys.release_api_key(
                ctx.kube, tenant=ref, instance=ctx.instance, secret_name=secret_name
            )
        else:
            await api_keys.delete_api_key(
                ctx.kube, tenant=ref, instance=ctx.instance, secret_name=secret_name
            )
    if ref.kind == "MailProxyInstance" and not retain:
        return "instance settings reset to their defaults" if count else "nothing to reset"
    if kept_for:
        return f"tenant row kept (released): {kept_for[0]} retained account(s) belong to it"
    verb = "released to the REST API" if retain else "deleted"
    return f"{count} row(s) {verb}"


async def request_reconcile(
    ctx: OperatorContext, *, kind: str, namespace: str, name: str, token: str
) -> bool:
    """Ask kopf to reconcile a resource again (its annotation changes); False if it is gone."""
    patch = {"metadata": {"annotations": {RECONCILE_REQUEST_ANNOTATION: token}}}
    try:
        await ctx.kube.patch_resource(KINDS[kind][0], namespace, name, patch)
    except KubeNotFound:
        return False
    except KubeApiError as exc:
        raise KubernetesUnavailable(f"Kubernetes API call failed: {exc}") from exc
    return True
