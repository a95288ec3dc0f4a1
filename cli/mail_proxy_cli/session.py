# SPDX-License-Identifier: Apache-2.0
"""Which server an admin verb talks to, and with which token.

`mail-proxy NAME ...` targets the local instance NAME (its URL from `instance.json`, its admin
token from its folder). `--url`/`GMP_URL` targets any instance instead (remote, in a cluster),
and then the token must be given with `--token`/`GMP_API_TOKEN`: a local token is never sent
to another server. `--token` also overrides the local token.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import click

from mail_proxy_cli import instances
from mail_proxy_cli.client import ApiClient, CliError
from mail_proxy_cli.output import Output


@dataclass
class Session:
    api: ApiClient
    out: Output
    instance: str
    tenant: str  # "" outside a tenant scope
    url: str


def scope_names(ctx: click.Context) -> tuple[str, str]:
    """(instance, tenant) named on the command line (`mail-proxy NAME [TENANT] verb`)."""
    instance, tenant = "", ""
    current: click.Context | None = ctx
    while current is not None:
        scope = getattr(current.command, "scope", None)
        if scope == "tenant" and not tenant:
            tenant = current.info_name or ""
        elif scope == "instance" and not instance:
            instance = current.info_name or ""
        current = current.parent
    return instance, tenant


def local_instance(name: str) -> instances.Instance:
    """The local instance `name`, or a one-line error saying how to create or reach one."""
    if not instances.exists(name):
        raise CliError(
            f"no instance named {name!r} in {instances.home_dir()}: `mail-proxy start {name}` "
            "creates it; a remote instance is reached with --url and --token"
        )
    return instances.load(name)


def target(name: str, *, url: str | None, token: str | None) -> tuple[str, str]:
    """(base URL, token) for the instance named `name`, honouring `--url`/`--token`."""
    if url is not None:
        if not token:
            raise click.UsageError("--url needs --token (or GMP_API_TOKEN) as well")
        return url, token
    local = local_instance(name)
    if instances.running_pid(local) is None:
        raise CliError(f"instance {name!r} is not running: start it with `mail-proxy start {name}`")
    token = token or local.admin_token()
    if not token:
        raise CliError(
            f"no admin token stored for instance {name!r}: "
            f"`mail-proxy {name} token --regenerate` makes one"
        )
    return local.url, token


@contextlib.contextmanager
def open_session(
    ctx: click.Context, *, url: str | None, token: str | None, as_json: bool
) -> Iterator[Session]:
    instance, tenant = scope_names(ctx)
    base_url, token = target(instance, url=url, token=token)
    with ApiClient(base_url, token) as api:
        yield Session(api, Output(as_json=as_json), instance, tenant, base_url)


url_option = click.option(
    "--url", envvar="GMP_URL", default=None, help="Talk to this instance URL (env GMP_URL)."
)
token_option = click.option(
    "--token",
    envvar="GMP_API_TOKEN",
    default=None,
    help="API token (env GMP_API_TOKEN); local instances need none.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def api_options(func: Callable[..., None]) -> Callable[..., None]:
    """Add `--url`, `--token`, `--json` and call `func(session, **params)`."""

    @functools.wraps(func)
    def run(*args: Any, url: str | None, token: str | None, as_json: bool, **kwargs: Any) -> None:
        with open_session(
            click.get_current_context(), url=url, token=token, as_json=as_json
        ) as session:
            func(session, *args, **kwargs)

    return url_option(token_option(json_option(run)))
