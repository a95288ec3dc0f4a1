# SPDX-License-Identifier: Apache-2.0
"""Local instance verbs: `start`, `stop`, `restart`, `list`, `delete`, `NAME info`, `NAME token`."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import click

from mail_proxy.admin_token import regenerate_admin_token, save_local_token
from mail_proxy.db.migrate import migrate
from mail_proxy.db.pool import connect
from mail_proxy.embedded import EmbeddedPostgres
from mail_proxy.errors import MailProxyError
from mail_proxy.instance_owner import InstanceInUse
from mail_proxy.tokens import new_token
from mail_proxy_cli import instances
from mail_proxy_cli.client import TOKEN_HEADER, ApiClient, CliError
from mail_proxy_cli.instances import Instance, InstanceError
from mail_proxy_cli.output import Output, epoch
from mail_proxy_cli.prompts import confirm_or_force
from mail_proxy_cli.session import (
    json_option,
    local_instance,
    scope_names,
    target,
    token_option,
    url_option,
)

# Longer than the server's own drain (sender grace 20 s, then the API's 10 s) before SIGKILL.
_STOP_SECONDS = 45.0
_name = click.argument("name")
_force_stop = click.option(
    "--force", "-f", is_flag=True, help="Kill at once (SIGKILL) instead of a graceful stop."
)


def _reserved(ctx: click.Context) -> set[str]:
    root = ctx.find_root()
    group = root.command
    names = set(group.list_commands(root)) if isinstance(group, click.Group) else set()
    return names | {"help"}


def _start(inst: Instance, *, port: int | None, host: str | None, wait_seconds: float) -> int:
    """Spawn the server and wait for `/health`; returns its pid. Caller holds the lock."""
    if host:
        inst.host = host
    if port:
        inst.port = port
    elif inst.port is None:
        inst.port = instances.pick_port(inst)
    if not instances.port_free(inst.host, inst.port):
        raise CliError(f"port {inst.port} on {inst.host} is in use: choose another with --port")
    inst.save()
    process = instances.spawn(inst)
    if instances.wait_healthy(inst, process, timeout_seconds=wait_seconds):
        return process.pid
    instances.stop(inst, timeout_seconds=_STOP_SECONDS)
    process.wait()
    tail = instances.log_tail(inst)
    raise CliError(f"instance {inst.name!r} did not start; end of {inst.log_file}:\n{tail}")


def _started_line(inst: Instance, pid: int) -> str:
    return (
        f"Instance {inst.name!r} running at {inst.url} (pid {pid}).\n"
        f"  folder {inst.folder}, log {inst.log_file}\n"
        f"  admin token: `mail-proxy {inst.name} token`"
    )


@click.command()
@_name
@click.option("--port", "-p", type=int, default=None, help="Port (default: saved, else 8000+).")
@click.option("--host", default=None, help="Bind address (default 127.0.0.1).")
@click.option(
    "--wait-seconds", type=float, default=60.0, show_default=True, help="How long to wait for it."
)
@click.pass_context
def start(
    ctx: click.Context, name: str, port: int | None, host: str | None, wait_seconds: float
) -> None:
    """Start instance NAME in the background (created at first start)."""
    try:
        instances.check_name(name, _reserved(ctx))
    except InstanceError as exc:
        raise click.UsageError(str(exc)) from exc
    inst = instances.load(name)
    with instances.locked(inst):
        owner = instances.owner(inst)
        if owner is not None and owner.command == "serve":
            # Never a second server on the same data, whoever started the first one.
            running_port = owner.port or inst.port
            if port and port != running_port:
                raise CliError(
                    f"instance {name!r} already runs on port {running_port} "
                    f"({owner.describe()}): `mail-proxy restart {name} --port {port}` moves it"
                )
            click.echo(f"Instance {name!r} is already running: {owner.describe()}.")
            return
        if owner is not None:
            raise CliError(str(InstanceInUse(inst.folder, owner)))
        pid = _start(inst, port=port, host=host, wait_seconds=wait_seconds)
    click.echo(_started_line(inst, pid))


def _stop_line(name: str, result: instances.StopResult) -> str:
    if not result.was_running:
        line = f"Instance {name!r} is not running."
    else:
        line = f"Instance {name!r} stopped" + (" (killed)." if result.killed else ".")
    if result.orphan_postgres_stopped:
        line += " Its leftover Postgres was stopped too."
    return line


@click.command()
@_name
@_force_stop
def stop(name: str, force: bool) -> None:
    """Stop instance NAME (graceful: queued work stays queued)."""
    inst = local_instance(name)
    with instances.locked(inst):
        result = instances.stop(inst, timeout_seconds=_STOP_SECONDS, force=force)
    click.echo(_stop_line(name, result))


@click.command()
@_name
@click.option("--port", "-p", type=int, default=None, help="Move it to this port.")
@click.option("--host", default=None, help="Bind address.")
@_force_stop
@click.option("--wait-seconds", type=float, default=60.0, show_default=True)
def restart(
    name: str, port: int | None, host: str | None, force: bool, wait_seconds: float
) -> None:
    """Stop instance NAME if it runs, then start it again."""
    inst = local_instance(name)
    with instances.locked(inst):
        click.echo(
            _stop_line(name, instances.stop(inst, timeout_seconds=_STOP_SECONDS, force=force))
        )
        pid = _start(inst, port=port, host=host, wait_seconds=wait_seconds)
    click.echo(_started_line(inst, pid))


def _status(inst: Instance) -> dict[str, Any] | None:
    """`/status` of a running instance, None when it cannot be read."""
    token = inst.admin_token()
    try:
        with ApiClient(inst.url, token, timeout_seconds=3.0) as api:
            status: dict[str, Any] = api.get("/status")
    except CliError:
        return None
    return status


def _row(inst: Instance) -> dict[str, Any]:
    pid = instances.running_pid(inst)
    status = _status(inst) if pid is not None else None
    return {
        "name": inst.name,
        "running": pid is not None,
        "port": inst.port,
        "pid": pid,
        "pending": status.get("pending_messages") if status else None,
        "url": inst.url if inst.port else None,
    }


@click.command("list")
@json_option
def list_instances(as_json: bool) -> None:
    """Local instances: name, port, running, pid, pending messages."""
    rows = [_row(inst) for inst in instances.all_instances()]
    columns = [
        ("name", "Name"),
        ("running", "Running"),
        ("port", "Port"),
        ("pid", "PID"),
        ("pending", "Pending"),
        ("url", "URL"),
    ]
    empty = f"No instances in {instances.home_dir()}: `mail-proxy start NAME` creates one."
    Output(as_json=as_json).table(rows, columns, empty=empty)


@click.command()
@_name
@click.option("--force", "-f", is_flag=True, help="Do not ask for confirmation.")
def delete(name: str, force: bool) -> None:
    """Stop instance NAME and delete its folder, database included."""
    inst = local_instance(name)
    confirm_or_force(
        f"Delete instance {name!r} and all its data in {inst.folder.resolve()}?", force=force
    )
    with instances.locked(inst):
        instances.stop(inst, timeout_seconds=_STOP_SECONDS)
    if inst.folder.is_symlink():
        # A `serve --data-dir` elsewhere, entered in the home as a link: its folder, then the link.
        shutil.rmtree(inst.folder.resolve())
        inst.folder.unlink()
    else:
        shutil.rmtree(inst.folder)
    click.echo(f"Instance {name!r} deleted.")


@click.command()
@url_option
@token_option
@json_option
@click.pass_context
def info(ctx: click.Context, url: str | None, token: str | None, as_json: bool) -> None:
    """Where the instance lives, whether it runs, and its queue."""
    name = scope_names(ctx)[0]
    record: dict[str, Any] = {"instance": name}
    running = True
    if url is None:
        inst = local_instance(name)
        pid = instances.running_pid(inst)
        started = instances.owner(inst) if pid else None
        running = pid is not None
        record |= {
            "folder": str(inst.folder),
            "url": inst.url if inst.port else None,
            "running": running,
            "pid": pid,
            "started": epoch(started.started_at) if started else None,
            "log": _log_place(inst, running),
        }
    if running:
        base_url, token = target(name, url=url, token=token)
        with ApiClient(base_url, token) as api:
            status = api.get("/status")
            tenants = api.get("/tenants")["tenants"]
        record |= {
            "url": base_url,
            "pending": status.get("pending_messages"),
            "uptime_seconds": status.get("uptime_seconds"),
            "tenants": len(tenants),
        }
    Output(as_json=as_json).fields(record, title=f"Instance {name}")


def _log_place(inst: Instance, running: bool) -> str | None:
    """Where the logs are: `server.log` once `start` has written it; a server started in the
    foreground (`mail-proxy serve`) logs to its terminal, and a never-started one has none."""
    if inst.log_file.exists():
        return str(inst.log_file)
    return "the terminal of `mail-proxy serve` (stderr)" if running else None


async def _regenerate_in(dsn: str) -> str:
    conn = await connect(dsn)
    try:
        await migrate(conn)
        return await regenerate_admin_token(conn)
    finally:
        await conn.close()


def _regenerate(inst: Instance) -> str:
    """A new admin token, set through the running server or, when stopped, in its database."""
    instances.require_writable(inst.folder)  # the new token is kept there
    if instances.running_pid(inst) is not None:
        new = new_token()
        with ApiClient(inst.url, inst.admin_token()) as api:
            api.put("/instance", {"api_token": new})
    else:
        try:
            with EmbeddedPostgres(inst.folder, command="token") as dsn:
                new = asyncio.run(_regenerate_in(dsn))
        except MailProxyError as exc:
            raise CliError(str(exc)) from exc
    save_local_token(inst.folder, new)
    return new


@click.command()
@click.option("--regenerate", "-r", is_flag=True, help="Replace the admin token with a new one.")
@json_option
@click.pass_context
def token(ctx: click.Context, regenerate: bool, as_json: bool) -> None:
    """Show how to authenticate to the instance as admin."""
    name = scope_names(ctx)[0]
    inst = local_instance(name)
    value = _regenerate(inst) if regenerate else inst.admin_token()
    if value is None:
        raise CliError(
            f"no admin token stored for {name!r} yet: start it once, "
            f"or `mail-proxy {name} token --regenerate`"
        )
    url = inst.url if inst.port else None
    data = {"instance": name, "url": url, "header": TOKEN_HEADER, "token": value}
    text = (
        f"Admin token of instance {name!r}"
        + (" (new; the old one no longer works)" if regenerate else "")
        + f":\n  {value}\n"
        f"Send it as the {TOKEN_HEADER} header, e.g.\n"
        f"  curl -H '{TOKEN_HEADER}: {value}' {url or 'http://HOST:PORT'}/status\n"
        f"The mail-proxy CLI finds it by itself in {inst.folder}."
    )
    Output(as_json=as_json).done(text, data)
