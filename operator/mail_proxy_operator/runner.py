# SPDX-License-Identifier: Apache-2.0
"""Running the operator: one standalone replica of kopf with the handlers, a pool and a client.

`run_operator` returns when kopf stops (SIGTERM/SIGINT, which kopf handles itself). kopf keeps
its progress and last-handled spec in annotations under `operator.mailproxy.genropy.org/` (so
`status` stays ours and secrets-free), its finalizer is `mailproxy.genropy.org/finalizer`, and
only Secrets labelled `mailproxy.genropy.org/watch` are watched. The liveness endpoint
(`/healthz`) also checks that Postgres answers.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from mail_proxy.config import Settings
from mail_proxy.db.migrate import pending_versions
from mail_proxy.db.pool import connect, create_pool
from mail_proxy.encryption import SecretBox
from mail_proxy.errors import ConfigError, MigrationError
from mail_proxy_operator.context import OperatorContext
from mail_proxy_operator.handlers import build_registry
from mail_proxy_operator.kube_api import KubeAccess, KubeApi
from mail_proxy_operator.secrets import WATCH_LABEL
from mail_proxy_operator.specs import GROUP

log = logging.getLogger("mail_proxy_operator")
KOPF_PREFIX = f"operator.{GROUP}"


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    # Our own handlers post the useful events; kopf's INFO chatter stays in the log.
    settings.posting.level = logging.WARNING
    # Server-side filter: referenced Secrets and our API-key Secrets only, never all of them.
    settings.watching.label_selectors["v1", "secrets"] = WATCH_LABEL
    # A watch that hangs silently (lost connection) is restarted.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    return settings


def connection_info(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """Credentials: KUBECONFIG when set, else the pod's service account, else ~/.kube/config."""
    info = None
    if os.environ.get("KUBECONFIG"):
        info = kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        info = kopf.login_with_service_account(settings=settings)
    if info is None:
        info = kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise ConfigError(
            "no Kubernetes credentials: run in a pod with a service account or set KUBECONFIG"
        )
    return info


def _drop_kopf_settings(record: logging.LogRecord) -> bool:
    # kopf attaches its whole OperatorSettings to every object log record; a JSON log line
    # would carry it each time.
    record.__dict__.pop("settings", None)
    return True


async def _require_current_schema(dsn: str) -> None:
    conn = await connect(dsn)
    try:
        missing = await pending_versions(conn)
    finally:
        await conn.close()
    if missing:
        raise MigrationError(
            f"schema not current (migrations {missing} pending): run `mail-proxy migrate`"
        )


def kube_access(info: kopf.ConnectionInfo) -> KubeAccess:
    return KubeAccess(
        server=info.server, headers=info.as_http_headers(), ssl_context=info.as_ssl_context()
    )


async def run_operator(*, settings: Settings, dsn: str, box: SecretBox) -> None:
    """Run until stopped; needs an encryption key (it stores passwords) and a current schema."""
    if not box.has_key:
        raise ConfigError(
            "the operator stores SMTP passwords and client credentials: set "
            "MAIL_PROXY_ENCRYPTION_KEY or mount /run/secrets/encryption_key"
        )
    await _require_current_schema(dsn)
    # Per-request lines of the HTTP clients say nothing the operator's own log does not.
    for name in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_drop_kopf_settings)
    options = kopf_settings()
    connection_info(options)  # fail now, not in kopf's retry loop, without credentials

    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(options)

    registry = build_registry(
        login, repair_interval_seconds=settings.operator_repair_interval_seconds
    )
    namespaces = list(settings.operator_namespaces)
    pool = await create_pool(dsn, min_size=1, max_size=settings.db_pool_max)
    kube = KubeApi(lambda: kube_access(connection_info(options)))
    ctx = OperatorContext(pool=pool, box=box, kube=kube)
    health = f"http://{settings.operator_health_host}:{settings.operator_health_port}/healthz"
    log.info(
        "operator starting",
        extra={
            "action": "operator_start",
            "namespaces": namespaces or "*",
            "health_endpoint": health,
        },
    )
    try:
        await kopf.operator(
            registry=registry,
            settings=options,
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=health,
            memo=kopf.Memo(ctx=ctx),
        )
    finally:
        await kube.aclose()
        await pool.close()
        log.info("operator stopped", extra={"action": "operator_stop"})
