# SPDX-License-Identifier: Apache-2.0
"""`mail-proxy`: run the service (serve, api, migrate) and look after its keys (token, rotate-key).

Instance and administration verbs (start/stop/list, tenants, accounts, ...) join in `instances`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click
from prometheus_client import disable_created_metrics

from mail_proxy import __version__
from mail_proxy.admin_token import (
    ensure_admin_token,
    read_local_token,
    regenerate_admin_token,
    save_local_token,
)
from mail_proxy.config import Settings, load_settings
from mail_proxy.db.migrate import pending_versions
from mail_proxy.db.pool import connect
from mail_proxy.db.rotate import reencrypt_all
from mail_proxy.encryption import KEY_ENV, PREVIOUS_KEYS_ENV, SecretBox, decode_key
from mail_proxy.errors import MailProxyError
from mail_proxy.large_files.secret import load_download_secret
from mail_proxy.logs import configure_logging
from mail_proxy.metrics import Metrics
from mail_proxy_api.context import ApiContext
from mail_proxy_cli.client import CliError
from mail_proxy_cli.dev_inbox import dev_inbox
from mail_proxy_cli.instances import (
    UNWRITABLE_ERRNOS,
    Instance,
    InstanceError,
    home_dir,
    register_external,
    require_writable,
    save_config,
    unwritable_message,
)
from mail_proxy_cli.runtime import (
    KEY_FILE,
    Database,
    database,
    instance_settings_followed,
    migrate_database,
    pool_for,
    say,
    stop_event_on_signals,
)
from mail_proxy_cli.scopes import LIFECYCLE_COMMANDS, MailProxyGroup
from mail_proxy_cli.services import serve_api, serve_sender
from mail_proxy_sender.service import SenderContext

_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Instance folder for the embedded Postgres, key and token "
    "(default ~/.mail-proxy/<instance>).",
)
_instance = click.option(
    "--instance", "instance_name", default=None, help="Instance name (env GMP_INSTANCE_NAME)."
)


def _settings(**flags: object) -> Settings:
    try:
        return load_settings(**flags)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _download_secret(settings: Settings) -> bytes | None:
    """The large-file link secret; without one (external database, none set) say so once."""
    secret = load_download_secret(settings)
    if secret is None:
        say(
            "GMP_DOWNLOAD_SECRET is not set: large-file download links are refused "
            "(oversized attachments are attached normally)"
        )
    return secret


async def _prepare(settings: Settings, db: Database) -> None:
    """Schema up to date and an admin token in place; a generated token is shown once."""
    for name in await migrate_database(db.dsn):
        say(f"applied migration {name}")
    if settings.api_token is not None:
        return
    conn = await connect(db.dsn)
    try:
        token = await ensure_admin_token(conn)
    finally:
        await conn.close()
    if token is None:
        return
    say(f"Generated admin token (shown once): {token}")
    if settings.embedded:
        path = save_local_token(settings.instance_dir, token)
        say(f"Saved for this instance in {path}; `mail-proxy token` shows it again.")
    else:
        say("Keep it: only its hash is stored. `mail-proxy token --regenerate` makes a new one.")


async def _run_api(settings: Settings, db: Database) -> None:
    await _prepare(settings, db)
    stop = stop_event_on_signals()
    async with (
        pool_for(settings, db) as pool,
        instance_settings_followed(settings, pool, db.box, stop),
    ):
        ctx = ApiContext(
            settings=settings,
            pool=pool,
            box=db.box,
            metrics=Metrics(),
            download_secret=_download_secret(settings),
        )
        say(f"mail-proxy API listening on http://{settings.host}:{settings.port}")
        if settings.api_metrics_port is not None:
            say(f"API metrics on http://{settings.host}:{settings.api_metrics_port}/metrics")
        await serve_api(ctx, settings, stop)


async def _run_all(settings: Settings, db: Database) -> None:
    """API, sender and reporter in one process, on one pool and one stop event."""
    if settings.embedded:
        # This process owns the folder now: `mail-proxy list` and `NAME ...` find it there.
        folder = settings.instance_dir
        save_config(folder, Instance(name=folder.name, host=settings.host, port=settings.port))
        try:
            root = click.get_current_context().find_root()
            commands = frozenset(cli.list_commands(root)) | {"help"}
            listed = register_external(folder, commands)
        except OSError as exc:
            say(
                f"warning: `mail-proxy list` will not show {folder}: cannot write "
                f"{home_dir()} ({exc.strerror or exc})"
            )
        else:
            if listed is not None:
                say(f"listed as {listed!r} by `mail-proxy list` ({home_dir() / listed})")
    await _prepare(settings, db)
    stop = stop_event_on_signals()
    async with (
        pool_for(settings, db) as pool,
        instance_settings_followed(settings, pool, db.box, stop),
    ):
        metrics = Metrics()
        secret = _download_secret(settings)
        api_ctx = ApiContext(
            settings=settings, pool=pool, box=db.box, metrics=metrics, download_secret=secret
        )
        sender_ctx = SenderContext(
            settings=settings,
            pool=pool,
            box=db.box,
            metrics=metrics,
            dsn=db.dsn,
            download_secret=secret,
        )
        say(f"mail-proxy API listening on http://{settings.host}:{settings.port}")
        if settings.api_metrics_port is not None:
            say(f"API metrics on http://{settings.host}:{settings.api_metrics_port}/metrics")
        api_task = asyncio.create_task(serve_api(api_ctx, settings, stop))
        api_task.add_done_callback(lambda _: stop.set())
        try:
            await serve_sender(sender_ctx, stop, probe_port=None)
        finally:
            stop.set()
            await api_task


async def _run_sender(settings: Settings, db: Database) -> None:
    if settings.embedded:
        await migrate_database(db.dsn)
    else:
        conn = await connect(db.dsn)
        try:
            missing = await pending_versions(conn)
        finally:
            await conn.close()
        if missing:
            raise click.ClickException(
                f"schema not current (migrations {missing} pending): run `mail-proxy migrate`"
            )
    stop = stop_event_on_signals()
    async with (
        pool_for(settings, db) as pool,
        instance_settings_followed(settings, pool, db.box, stop),
    ):
        ctx = SenderContext(
            settings=settings,
            pool=pool,
            box=db.box,
            metrics=Metrics(),
            dsn=db.dsn,
            download_secret=_download_secret(settings),
        )
        port = settings.sender_metrics_port or None
        if port is not None:
            say(f"mail-proxy sender {ctx.owner}: probes on http://{settings.host}:{port}")
        await serve_sender(ctx, stop, probe_port=port)


def _run_on_fastest_loop(coro: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run`, on uvloop where it is installed (uvicorn[standard] brings it on Linux and
    macOS): asyncpg and the HTTP server do markedly more per CPU second on it."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)


def _run(settings: Settings, coro_factory: object) -> None:
    configure_logging(settings.log_level, settings.log_format)
    disable_created_metrics()  # type: ignore[no-untyped-call]
    command = click.get_current_context().info_name or "serve"
    if settings.database_url is None:
        try:
            require_writable(settings.instance_dir)  # before Postgres or a key file is made
        except InstanceError as exc:
            raise CliError(str(exc)) from exc
    try:
        with database(settings, command=command) as db:
            _run_on_fastest_loop(coro_factory(settings, db))  # type: ignore[operator]
    except MailProxyError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(cls=MailProxyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mail-proxy")
def cli() -> None:
    """mail-proxy: apps POST mail, Postgres keeps it, senders deliver it and report back."""


# start/stop/restart/list/delete; `mail-proxy NAME ...` verbs are resolved by MailProxyGroup.
for _command in LIFECYCLE_COMMANDS:
    cli.add_command(_command)
cli.add_command(dev_inbox)


@cli.command()
@click.option("--host", default=None, help="Bind address (env GMP_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (env GMP_PORT, default 8000).")
@_data_dir
@_instance
def serve(
    host: str | None, port: int | None, data_dir: Path | None, instance_name: str | None
) -> None:
    """Run the whole service in one process (embedded Postgres unless GMP_DATABASE_URL is set)."""
    settings = _settings(host=host, port=port, data_dir=data_dir, instance_name=instance_name)
    _run(settings, _run_all)


@cli.command()
@click.option("--host", default=None, help="Bind address (env GMP_HOST).")
@click.option("--port", type=int, default=None, help="Port (env GMP_PORT, default 8000).")
def api(host: str | None, port: int | None) -> None:
    """Run only the REST API against GMP_DATABASE_URL (what an API pod runs)."""
    settings = _settings(host=host, port=port)
    if settings.database_url is None:
        raise click.UsageError("`mail-proxy api` needs GMP_DATABASE_URL; use `serve` on a laptop")
    _run(settings, _run_api)


@cli.command()
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Port for /health, /ready and /metrics (env GMP_SENDER_METRICS_PORT, default 9100; "
    "0 turns the endpoint off). Binds GMP_HOST.",
)
@_data_dir
@_instance
def sender(metrics_port: int | None, data_dir: Path | None, instance_name: str | None) -> None:
    """Run a sender: lease, deliver over SMTP and report back (what a sender pod runs)."""
    settings = _settings(
        sender_metrics_port=metrics_port, data_dir=data_dir, instance_name=instance_name
    )
    _run(settings, _run_sender)


@cli.command()
@click.option(
    "--health-port",
    type=int,
    default=None,
    help="Port of the liveness endpoint /healthz (env GMP_OPERATOR_HEALTH_PORT, default 8080).",
)
@click.option(
    "--health-host",
    default=None,
    help="Bind address of /healthz (env GMP_OPERATOR_HEALTH_HOST, default 127.0.0.1; "
    "0.0.0.0 in a pod).",
)
def operator(health_port: int | None, health_host: str | None) -> None:
    """Run the Kubernetes operator: Tenant, SmtpAccount and MailProxyInstance resources to rows
    in GMP_DATABASE_URL (one replica; credentials from the pod or KUBECONFIG)."""
    settings = _settings(operator_health_port=health_port, operator_health_host=health_host)
    if settings.database_url is None:
        raise click.UsageError("`mail-proxy operator` needs GMP_DATABASE_URL")

    async def run(settings: Settings, db: Database) -> None:
        # kopf is the optional `operator` extra: imported only by the command that needs it.
        from mail_proxy_operator.runner import run_operator

        await run_operator(settings=settings, dsn=db.dsn, box=db.box)

    _run(settings, run)


@cli.command()
@_data_dir
@_instance
def migrate(data_dir: Path | None, instance_name: str | None) -> None:
    """Apply pending schema migrations, then exit."""
    settings = _settings(data_dir=data_dir, instance_name=instance_name)

    async def run(settings: Settings, db: Database) -> None:
        applied = await migrate_database(db.dsn)
        say("\n".join(f"applied migration {name}" for name in applied) or "schema is current")

    _run(settings, run)


@cli.command()
@click.option("--regenerate", is_flag=True, help="Replace the admin token with a new one.")
@_data_dir
@_instance
def token(regenerate: bool, data_dir: Path | None, instance_name: str | None) -> None:
    """Show how to authenticate as admin (and optionally make a new admin token)."""
    settings = _settings(data_dir=data_dir, instance_name=instance_name)
    if settings.api_token is not None and not regenerate:
        say("The admin token is the value of GMP_API_TOKEN in this environment.")
        return
    if settings.embedded and not regenerate:
        stored = read_local_token(settings.instance_dir)
        if stored is not None:
            say(stored)
            return

    async def run(settings: Settings, db: Database) -> None:
        await migrate_database(db.dsn)
        conn = await connect(db.dsn)
        try:
            new = await regenerate_admin_token(conn)
        finally:
            await conn.close()
        if settings.embedded:
            save_local_token(settings.instance_dir, new)
        say(new)
        if settings.api_token is not None:
            say(
                "Note: GMP_API_TOKEN is set and wins over the stored token.",
            )

    _run(settings, run)


@cli.command("rotate-key")
@click.option(
    "--new-key",
    envvar="MAIL_PROXY_NEW_ENCRYPTION_KEY",
    default=None,
    help="Base64 32-byte key to move to (env MAIL_PROXY_NEW_ENCRYPTION_KEY); "
    "generated when omitted in embedded mode.",
)
@_data_dir
@_instance
def rotate_key(new_key: str | None, data_dir: Path | None, instance_name: str | None) -> None:
    """Re-encrypt every stored secret under a new encryption key."""
    from mail_proxy.encryption import generate_key

    settings = _settings(data_dir=data_dir, instance_name=instance_name)
    if new_key is None:
        if not settings.embedded:
            raise click.UsageError(
                "give the new key with --new-key or MAIL_PROXY_NEW_ENCRYPTION_KEY"
            )
        new_key = generate_key()
    try:
        new_box = SecretBox(decode_key(new_key))
    except MailProxyError as exc:
        raise click.BadParameter(str(exc), param_hint="--new-key") from exc

    async def run(settings: Settings, db: Database) -> None:
        if not db.box.has_key:
            raise click.ClickException("no current encryption key configured: nothing to rotate")
        await migrate_database(db.dsn)
        conn = await connect(db.dsn)
        try:
            async with conn.transaction():
                changed = await reencrypt_all(conn, old=db.box, new=new_box)
        finally:
            await conn.close()
        if settings.embedded and KEY_ENV not in os.environ:
            key_path = settings.instance_dir / KEY_FILE
            key_path.write_text(new_key + "\n")
            say(f"re-encrypted {changed} rows; the instance key in {key_path} was replaced")
        else:
            say(
                f"re-encrypted {changed} rows; now set {KEY_ENV} to the new key everywhere "
                f"(keep the old one in {PREVIOUS_KEYS_ENV} until every process has the new key)"
            )

    _run(settings, run)


def main() -> None:
    """The `mail-proxy` command. A folder that cannot be written (instance folder, GMP_HOME,
    dev inbox) ends it with one line naming the folder and what to do, exit status 1, wherever
    the write was; commands check their instance folder up front, this is the net below."""
    try:
        cli(prog_name="mail-proxy")
    except InstanceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        if exc.errno not in UNWRITABLE_ERRNOS:
            raise
        where = Path(exc.filename) if exc.filename is not None else home_dir()
        folder = where if where.is_dir() or not where.parent.is_dir() else where.parent
        click.echo(f"error: {unwritable_message(folder, exc, what='folder')}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
