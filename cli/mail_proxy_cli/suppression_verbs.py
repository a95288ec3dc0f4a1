# SPDX-License-Identifier: BUSL-1.1
"""`NAME TENANT suppressions list|add|remove`: the tenant's suppression list over the REST API."""

from __future__ import annotations

from urllib.parse import quote

import click

from mail_proxy_cli.prompts import confirm_or_force, require
from mail_proxy_cli.session import Session, api_options

COLUMNS = [
    ("address", "Address"),
    ("source", "Source"),
    ("reason", "Reason"),
    ("bounce_code", "Code"),
    ("message_id", "Message"),
    ("created_at", "Since"),
]


@click.group()
def suppressions() -> None:
    """Addresses this tenant's messages are never sent to (hard bounces, manual entries)."""


@suppressions.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--contains", default=None, help="Only addresses containing this text.")
@api_options
def list_suppressions(session: Session, limit: int, contains: str | None) -> None:
    """Suppressed addresses, in address order."""
    params: dict[str, object] = {"tenant_id": session.tenant, "limit": limit}
    if contains:
        params["contains"] = contains
    answer = session.api.get("/suppressions", **params)
    rows = answer["suppressions"]
    session.out.table(rows, COLUMNS, empty="No suppressed addresses.", data=rows)
    if answer.get("next_cursor") and not session.out.as_json:
        click.echo(f"(more than {limit}: raise --limit to see more)", err=True)


@suppressions.command("add")
@click.argument("address", required=False)
@click.option("--reason", default="added manually", show_default=True)
@api_options
def add_suppression(session: Session, address: str | None, reason: str) -> None:
    """Stop sending to ADDRESS: later messages to it are refused (`recipient suppressed`)."""
    address = require(address, "Address to suppress", hint="ADDRESS argument")
    body = {"tenant_id": session.tenant, "address": address, "reason": reason}
    answer = session.api.post("/suppressions", body)
    verb = "suppressed" if answer.get("added") else "was already suppressed"
    session.out.done(f"{address} {verb} for tenant {session.tenant!r}.", answer)


@suppressions.command("remove")
@click.argument("address", required=False)
@click.option("--force", "-f", is_flag=True, help="Do not ask for confirmation.")
@api_options
def remove_suppression(session: Session, address: str | None, force: bool) -> None:
    """Send to ADDRESS again."""
    address = require(address, "Address to send to again", hint="ADDRESS argument")
    confirm_or_force(f"Send to {address} again?", force=force)
    answer = session.api.delete(
        f"/suppressions/{quote(address, safe='@')}", tenant_id=session.tenant
    )
    session.out.done(f"{address} removed from the suppression list.", answer)
