# SPDX-License-Identifier: Apache-2.0
"""Running the operator: a health server, then leader election, then kopf on the leader.

Order of a start: `/healthz` and `/metrics` listen first (liveness is the event loop answering,
never Postgres); Postgres is waited for with one log line (not a traceback) while it is down;
the schema must be current; then the replica campaigns for the `coordination.k8s.io` Lease
(`mail-proxy-operator-<instance>`) and only the holder runs kopf and the background
re-encryption. A replica that loses the Lease exits (its pod restarts as a follower); one that
is stopped (SIGTERM) releases the Lease so another takes over at once.

kopf keeps its progress and last-handled spec in annotations under
`operator.mailproxy.genropy.org/` (so `status` stays ours and secrets-free), its finalizer is
`mailproxy.genropy.org/finalizer`, and only Secrets labelled `mailproxy.genropy.org/watch` are
watched. kopf posts no events of its own: ours are posted once per transition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import kopf
from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mail_proxy.config import Settings
from mail_proxy.db.migrate import pending_versions
from mail_proxy.db.pool import DATABASE_ERRORS, connect, create_pool
from mail_proxy.encryption import SecretBox
from mail_proxy.errors import ConfigError, MailProxyError, MigrationError
from mail_proxy_operator.context import OperatorContext
from mail_proxy_operator.handlers import build_registry
from mail_proxy_operator.keyring import follow_key_secret, read_key_secret, reencrypt_loop
from mail_proxy_operator.kube_api import KubeApi, KubeApiError
from mail_proxy_operator.metrics import OperatorMetrics
from mail_proxy_operator.secrets import WATCH_LABEL
from mail_proxy_operator.specs import GROUP

log = logging.getLogger("mail_proxy_operator")
KOPF_PREFIX = f"operator.{GROUP}"
DB_WAIT_SECONDS = 2.0
DB_CHECK_SECONDS = 5.0  # how long one check may take
DB_CHECK_EVERY_SECONDS = 1.0  # `database_up` lags an outage by about this much


class LostLeadership(MailProxyError):
    """The Lease was taken over or could not be renewed: this replica must stop writing."""


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    # The served namespaces are named and the CRDs installed first: no cluster-wide scanning
    # of CRDs and namespaces, so the operator needs no cluster-scoped permission at all.
    settings.scanning.disabled = True
    # Our handlers post the useful events, once per transition; kopf's per-retry ones stay off.
    settings.posting.enabled = False
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


def _where(dsn: str) -> str:
    """host:port/db of a DSN, without user or password (for the one line we print)."""
    tail = dsn.split("@", 1)[-1]
    return tail.split("?", 1)[0]


async def wait_for_database(dsn: str, stop: asyncio.Event) -> bool:
    """Until Postgres answers (True) or `stop` is set (False); one line while it is down.

    A schema that is not current is a `MigrationError` (run `mail-proxy migrate`), not a wait.
    """
    said = False
    while not stop.is_set():
        try:
            conn = await asyncio.wait_for(connect(dsn), 10)
        except DATABASE_ERRORS as exc:
            if not said:
                said = True
                log.warning(
                    "Postgres at %s is not answering (%s); waiting for it",
                    _where(dsn),
                    type(exc).__name__,
                    extra={"action": "database_wait"},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), DB_WAIT_SECONDS)
            continue
        try:
            missing = await pending_versions(conn)
        finally:
            await conn.close()
        if missing:
            raise MigrationError(
                f"schema not current (migrations {missing} pending): run `mail-proxy migrate`"
            )
        if said:
            log.info("Postgres answers again", extra={"action": "database_back"})
        return True
    return False


async def watch_database(pool: asyncpg.Pool, metrics: OperatorMetrics) -> None:
    """`database_up` follows Postgres; one log line per transition. Runs forever.

    Any failure of the check counts as down (a connection cut mid-query raises asyncpg's
    InternalClientError, which an earlier list of exceptions let end this task with the gauge
    stuck at 1)."""
    up: bool | None = None
    while True:
        try:
            async with pool.acquire(timeout=DB_CHECK_SECONDS) as conn:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), DB_CHECK_SECONDS)
            now = True
        except DATABASE_ERRORS:
            now = False
        except Exception:
            log.exception("database check failed", extra={"action": "database_check_error"})
            now = False
        if now != up:
            metrics.database_up.set(1 if now else 0)
            if up is not None:
                if now:
                    log.info("Postgres answers again", extra={"action": "database_back"})
                else:
                    log.warning("Postgres stopped answering", extra={"action": "database_down"})
            up = now
        await asyncio.sleep(DB_CHECK_EVERY_SECONDS)


async def start_health_server(host: str, port: int, metrics: OperatorMetrics) -> web.AppRunner:
    """`/healthz` (the event loop answers) and `/metrics`, on `host:port`."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def home_namespace(settings: Settings) -> str:
    """The operator's own namespace: POD_NAMESPACE (the chart sets it), else the first watched
    namespace, else `default`. Never empty, so nothing falls back to "any namespace"."""
    if pod_namespace := os.environ.get("POD_NAMESPACE"):
        return pod_namespace
    return settings.operator_namespaces[0] if settings.operator_namespaces else "default"


def instance_namespace(settings: Settings) -> str:
    """The one namespace a MailProxyInstance is taken from: GMP_OPERATOR_INSTANCE_NAMESPACE,
    else the operator's own. Anywhere else it stays Ready=False (`WrongNamespace`), so a team
    that may only create resources in a watched namespace cannot take the install's settings."""
    return settings.operator_instance_namespace or home_namespace(settings)


def _lease_namespace(settings: Settings) -> str:
    return settings.operator_lease_namespace or home_namespace(settings)


def _key_secret(settings: Settings) -> tuple[str, str] | None:
    ref = settings.operator_encryption_key_secret
    if not ref:
        return None
    namespace, _, name = ref.rpartition("/")
    return (namespace or home_namespace(settings), name)


async def _release_lease(kube: KubeApi, name: str, namespace: str, identity: str) -> None:
    """Hand the Lease back on a clean stop, so a follower takes over without waiting."""
    api = client.CoordinationV1Api(kube.api_client)
    try:
        lease = await kube.call("GET Lease", api.read_namespaced_lease(name, namespace))
        if lease.spec is None or lease.spec.holder_identity != identity:
            return
        lease.spec.holder_identity = None  # type: ignore[assignment]
        lease.spec.lease_duration_seconds = 1
        await kube.call("PUT Lease", api.replace_namespaced_lease(name, namespace, lease))
    except KubeApiError as exc:
        log.warning("cannot release the leader Lease: %s", exc)


class Leadership:
    """What the main task needs to know of the election: leading now, and kopf finished."""

    def __init__(self) -> None:
        self.leading = asyncio.Event()
        self.lead_done = asyncio.Event()
        self.lease: tuple[str, str, str] | None = None  # name, namespace, identity


def _without_traceback(record: logging.LogRecord) -> bool:
    """Keep the record, without its exception stack (asyncpg's pool-floor retries)."""
    if record.exc_info is not None:
        record.msg = f"{record.getMessage()}: {record.exc_info[1]!r}"
        record.args = None
    record.exc_info = None
    record.exc_text = None
    return True


async def _lead_and_mark(
    lead: Callable[[], Awaitable[None]], state: Leadership, metrics: OperatorMetrics
) -> None:
    metrics.leader.set(1)
    state.leading.set()
    try:
        await lead()
    except Exception:
        log.exception("the operator stopped on an unexpected error")
    finally:
        metrics.leader.set(0)
        state.lead_done.set()


async def _campaign(
    kube: KubeApi,
    settings: Settings,
    metrics: OperatorMetrics,
    lead: Callable[[], Awaitable[None]],
    state: Leadership,
) -> None:
    """Run `lead` while holding the Lease; returns only when the Lease is lost."""
    name = f"mail-proxy-operator-{settings.operator_instance or 'default'}"
    namespace = _lease_namespace(settings)
    identity = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    state.lease = (name, namespace, identity)
    # The Lease stores whole seconds (spec.leaseDurationSeconds is an integer).
    duration = max(round(settings.operator_lease_duration_seconds), 3)

    async def on_started() -> None:
        log.info("leading", extra={"action": "leader_elected", "lease": f"{namespace}/{name}"})
        await _lead_and_mark(lead, state, metrics)

    async def on_stopped() -> None:
        metrics.leader.set(0)

    config = electionconfig.Config(
        LeaseLock(name, namespace, identity, kube.api_client),
        lease_duration=duration,
        renew_deadline=duration * 2 / 3,
        retry_period=max(1.0, duration / 5),
        onstarted_leading=on_started,
        onstopped_leading=on_stopped,
    )
    log.info("waiting for the leader Lease %s/%s as %s", namespace, name, identity)
    await leaderelection.LeaderElection(config).run()


async def run_operator(*, settings: Settings, dsn: str, box: SecretBox) -> None:
    """Run until stopped; needs an encryption key (it stores passwords) and a current schema."""
    key_secret = _key_secret(settings)
    if not box.has_key and key_secret is None:
        raise ConfigError(
            "the operator stores SMTP passwords and client credentials: set "
            "MAIL_PROXY_ENCRYPTION_KEY or mount /run/secrets/encryption_key"
        )
    # Per-request lines of the HTTP clients say nothing the operator's own log does not.
    for name in ("httpx", "httpcore", "aiohttp.access", "kubernetes_asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_drop_kopf_settings)
    # During an outage asyncpg retries its pool floor and logs each try with a traceback; the
    # outage is already a status, an event and database_up 0: keep its line, drop the stack.
    logging.getLogger("asyncpg.pool").addFilter(_without_traceback)
    options = kopf_settings()
    connection_info(options)  # fail now, not in kopf's retry loop, without credentials

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    metrics = OperatorMetrics()
    health = await start_health_server(
        settings.operator_health_host, settings.operator_health_port, metrics
    )
    kube = await KubeApi.connect()
    tasks: list[asyncio.Task[Any]] = []
    try:
        if not await wait_for_database(dsn, stop):
            return
        pool = await create_pool(dsn, min_size=1, max_size=settings.db_pool_max)
        ctx = OperatorContext(
            pool=pool,
            box=box,
            kube=kube,
            metrics=metrics,
            api_key_grace_seconds=settings.operator_api_key_grace_seconds,
            instance=settings.operator_instance,
            download_base_url=settings.download_base_url,
            instance_namespace=instance_namespace(settings),
        )
        keys_changed = asyncio.Event()
        if key_secret is not None:
            namespace, name = key_secret
            field = settings.operator_encryption_key_secret_key
            ctx.box = await read_key_secret(ctx, namespace=namespace, name=name, key_field=field)
            tasks.append(
                asyncio.create_task(
                    follow_key_secret(
                        ctx,
                        namespace=namespace,
                        name=name,
                        key_field=field,
                        interval_seconds=min(5.0, settings.operator_repair_interval_seconds),
                        changed=keys_changed,
                    )
                )
            )
        tasks.append(asyncio.create_task(watch_database(pool, metrics)))
        registry = build_registry(
            lambda **_: connection_info(options),
            repair_interval_seconds=settings.operator_repair_interval_seconds,
            instance=settings.operator_instance,
        )
        namespaces = list(settings.operator_namespaces)

        async def lead() -> None:
            rotation = asyncio.create_task(
                reencrypt_loop(
                    ctx,
                    interval_seconds=max(settings.operator_repair_interval_seconds, 1.0),
                    changed=keys_changed,
                )
            )
            try:
                await kopf.operator(
                    registry=registry,
                    settings=options,
                    standalone=True,
                    clusterwide=not namespaces,
                    namespaces=namespaces,
                    memo=kopf.Memo(ctx=ctx),
                    stop_flag=stop,
                )
            finally:
                rotation.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await rotation
                stop.set()  # kopf stopped (signal or stop): the whole process stops

        log.info(
            "operator starting",
            extra={
                "action": "operator_start",
                "namespaces": namespaces or "*",
                "instance": settings.operator_instance or "(unlabelled)",
                "health_endpoint": f"http://{settings.operator_health_host}:"
                f"{settings.operator_health_port}/healthz",
            },
        )
        state = Leadership()
        try:
            if settings.operator_leader_election:
                election = asyncio.create_task(_campaign(kube, settings, metrics, lead, state))
            else:
                election = asyncio.create_task(_lead_and_mark(lead, state, metrics))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({election, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if election.done() and not stop.is_set() and settings.operator_leader_election:
                election.result()
                raise LostLeadership("lost the leader Lease: stopping so a new leader takes over")
            if state.leading.is_set():
                # kopf sees the same stop flag and finishes what it is doing.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.lead_done.wait(), 60)
            election.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await election
            if state.leading.is_set() and state.lease is not None:
                await _release_lease(kube, *state.lease)
        finally:
            await pool.close()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await kube.aclose()
        await health.cleanup()
        log.info("operator stopped", extra={"action": "operator_stop"})
