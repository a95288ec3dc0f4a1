# SPDX-License-Identifier: Apache-2.0
"""Instance-wide admin verbs over the REST API: `NAME tenants list|add|show|update|delete`,
`NAME run-now`. They need the admin token (a local instance's is found by itself)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from mail_proxy_cli.client import CliError
from mail_proxy_cli.prompts import choose, confirm_or_force, interactive, optional, require
from mail_proxy_cli.session import Session, api_options

TENANT_COLUMNS = [
    ("id", "ID"),
    ("name", "Name"),
    ("active", "Active"),
    ("client_base_url", "Base URL"),
    ("suspended_batches", "Suspended"),
    ("managed_by", "Managed by"),
]
AUTH_METHODS = ["none", "bearer", "basic"]


@click.group()
def tenants() -> None:
    """Tenants of the instance (admin)."""


@tenants.command("list")
@click.option("--active-only", is_flag=True, help="Only active tenants.")
@api_options
def list_tenants(session: Session, active_only: bool) -> None:
    """All tenants."""
    answer = session.api.get("/tenants", active_only="true" if active_only else None)
    rows = answer["tenants"]
    session.out.table(rows, TENANT_COLUMNS, empty="No tenants yet: `tenants add`.")


def _tenant_options(func: Callable[..., None]) -> Callable[..., None]:
    options = [
        click.option("--name", default=None, help="Display name."),
        click.option("--base-url", default=None, help="The app's base URL (delivery reports)."),
        click.option("--sync-path", default=None, help="Report path (default /mail-proxy/sync)."),
        click.option("--attachment-path", default=None, help="Attachment endpoint path."),
        click.option(
            "--auth-method",
            type=click.Choice(AUTH_METHODS),
            default=None,
            help="How mail-proxy authenticates to the app.",
        ),
        click.option("--auth-token", default=None, help="Bearer token (asked hidden if missing)."),
        click.option("--auth-user", default=None, help="Basic auth user."),
        click.option(
            "--auth-password", default=None, help="Basic auth password (asked hidden if missing)."
        ),
        click.option("--rate-limit-hourly", type=int, default=None, help="Messages per hour."),
        click.option("--rate-limit-daily", type=int, default=None, help="Messages per day."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _client_auth(
    method: str | None, token: str | None, user: str | None, password: str | None
) -> dict[str, Any] | None:
    """The `client_auth` object; a missing secret is asked for hidden on a terminal."""
    if method is None:
        if token:
            method = "bearer"
        elif user or password:
            method = "basic"
        else:
            return None
    if method == "bearer":
        token = require(token, "Bearer token", hint="--auth-token", hide=True)
        return {"method": "bearer", "token": token}
    if method == "basic":
        user = require(user, "Basic auth user", hint="--auth-user")
        password = require(password, "Basic auth password", hint="--auth-password", hide=True)
        return {"method": "basic", "user": user, "password": password}
    return {"method": "none"}


def _tenant_fields(params: dict[str, Any]) -> dict[str, Any]:
    """Request body fields from the shared tenant options; unset options are left out."""
    fields: dict[str, Any] = {
        "name": params["name"],
        "client_base_url": params["base_url"],
        "client_sync_path": params["sync_path"],
        "client_attachment_path": params["attachment_path"],
    }
    auth = _client_auth(
        params["auth_method"], params["auth_token"], params["auth_user"], params["auth_password"]
    )
    if auth is not None:
        fields["client_auth"] = auth
    limits = {"hourly": params["rate_limit_hourly"], "daily": params["rate_limit_daily"]}
    if any(v is not None for v in limits.values()):
        fields["rate_limits"] = {k: v for k, v in limits.items() if v is not None}
    return {k: v for k, v in fields.items() if v is not None}


@tenants.command("add")
@click.argument("tenant_id", required=False)
@_tenant_options
@click.option("--inactive", is_flag=True, help="Create it suspended from sending.")
@api_options
def add_tenant(session: Session, tenant_id: str | None, inactive: bool, **params: Any) -> None:
    """Create a tenant; its API key is shown once."""
    form = interactive() and tenant_id is None  # asked for the id: ask the usual fields too
    tenant_id = require(tenant_id, "Tenant id", hint="TENANT_ID argument")
    if form:
        params["name"] = params["name"] or optional("Name (empty for none)")
        params["base_url"] = params["base_url"] or optional(
            "App base URL for delivery reports (empty for none)"
        )
        if params["base_url"] and params["auth_method"] is None:
            params["auth_method"] = choose("Auth to the app", AUTH_METHODS, hint="--auth-method")
    body = {"id": tenant_id, "active": not inactive, **_tenant_fields(params)}
    answer = session.api.post("/tenant", body)
    key = answer.get("api_key")
    if key is None:
        text = f"Tenant {tenant_id!r} already existed: updated, its API key is unchanged."
    else:
        text = f"Tenant {tenant_id!r} created. Its API key (shown only now):\n  {key}"
    session.out.done(text, {"id": tenant_id, **answer})


@tenants.command("show")
@click.argument("tenant_id", required=False)
@api_options
def show_tenant(session: Session, tenant_id: str | None) -> None:
    """One tenant's settings (secrets masked)."""
    tenant_id = require(tenant_id, "Tenant id", hint="TENANT_ID argument")
    session.out.fields(session.api.get(f"/tenant/{tenant_id}"), title=f"Tenant {tenant_id}")


@tenants.command("update")
@click.argument("tenant_id", required=False)
@_tenant_options
@click.option("--active/--inactive", default=None, help="Enable or disable the tenant.")
@api_options
def update_tenant(
    session: Session, tenant_id: str | None, active: bool | None, **params: Any
) -> None:
    """Change some of a tenant's settings; the others stay as they are."""
    tenant_id = require(tenant_id, "Tenant id", hint="TENANT_ID argument")
    fields = _tenant_fields(params)
    if active is not None:
        fields["active"] = active
    if not fields:
        raise click.UsageError("nothing to update: give at least one option (see --help)")
    answer = session.api.put(f"/tenant/{tenant_id}", fields)
    session.out.done(f"Tenant {tenant_id!r} updated.", answer)


@tenants.command("delete")
@click.argument("tenant_id", required=False)
@click.option("--force", "-f", is_flag=True, help="Do not ask for confirmation.")
@api_options
def delete_tenant(session: Session, tenant_id: str | None, force: bool) -> None:
    """Delete a tenant with its accounts and messages."""
    tenant_id = require(tenant_id, "Tenant id", hint="TENANT_ID argument")
    confirm_or_force(f"Delete tenant {tenant_id!r} with its accounts and messages?", force=force)
    answer = session.api.delete(f"/tenant/{tenant_id}")
    session.out.done(f"Tenant {tenant_id!r} deleted.", answer)


@click.command("run-now")
@api_options
def run_now(session: Session) -> None:
    """Wake every sender and reporter now instead of at their next poll."""
    answer = session.api.post("/commands/run-now")
    if not answer.get("ok"):
        raise CliError(f"run-now refused: {answer}")
    session.out.done("Senders and reporters woken up.", answer)
