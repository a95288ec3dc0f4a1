# SPDX-License-Identifier: Apache-2.0
"""Verbs on one tenant over the REST API: `NAME TENANT info | api-key rotate|revoke |
accounts list|add|delete | messages list | send FILE.eml | run-now | suspend | activate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mail_proxy.states import MessageState
from mail_proxy_cli.client import CliError
from mail_proxy_cli.eml import EmlError, message_from_eml
from mail_proxy_cli.output import epoch
from mail_proxy_cli.prompts import choose, confirm_or_force, interactive, optional, require
from mail_proxy_cli.session import Session, api_options

STATUSES = [state.value for state in MessageState] + ["all"]  # click lists enums by name


@click.command("info")
@api_options
def tenant_info(session: Session) -> None:
    """The tenant's settings (secrets masked)."""
    record = session.api.get(f"/tenant/{session.tenant}")
    session.out.fields(record, title=f"Tenant {session.tenant}")


@click.group("api-key")
def api_key() -> None:
    """The tenant's API key (admin)."""


@api_key.command("rotate")
@click.option("--expires-at", type=int, default=None, help="Expiry, epoch seconds.")
@api_options
def rotate_key(session: Session, expires_at: int | None) -> None:
    """Replace the tenant's API key; the old one stops working at once."""
    body = {"expires_at": expires_at} if expires_at is not None else None
    answer = session.api.post(f"/tenant/{session.tenant}/api-key", body)
    text = f"New API key of tenant {session.tenant!r} (shown only now):\n  {answer['api_key']}"
    session.out.done(text, answer)


@api_key.command("revoke")
@api_options
def revoke_key(session: Session) -> None:
    """Remove the tenant's API key: the app can no longer call the API."""
    answer = session.api.delete(f"/tenant/{session.tenant}/api-key")
    session.out.done(f"API key of tenant {session.tenant!r} revoked.", answer)


@click.group()
def accounts() -> None:
    """The tenant's SMTP accounts."""


ACCOUNT_COLUMNS = [
    ("id", "ID"),
    ("host", "Host"),
    ("port", "Port"),
    ("user", "User"),
    ("use_tls", "TLS"),
    ("limit_per_minute", "/min"),
    ("limit_per_hour", "/hour"),
    ("limit_per_day", "/day"),
    ("limit_behavior", "Over limit"),
    ("managed_by", "Managed by"),
]


@accounts.command("list")
@api_options
def list_accounts(session: Session) -> None:
    """All SMTP accounts of the tenant (passwords never shown)."""
    rows = session.api.get("/accounts", tenant_id=session.tenant)["accounts"]
    session.out.table(rows, ACCOUNT_COLUMNS, empty="No SMTP accounts yet: `accounts add`.")


@accounts.command("add")
@click.argument("account_id", required=False)
@click.option("--host", default=None, help="SMTP server host.")
@click.option("--port", type=int, default=None, help="SMTP server port.")
@click.option("--user", default=None, help="SMTP user.")
@click.option("--password", default=None, help="SMTP password (asked hidden when missing).")
@click.option("--tls/--no-tls", "use_tls", default=None, help="TLS (default: by port).")
@click.option("--tls-verify/--no-tls-verify", default=True, help="Check the certificate.")
@click.option("--batch-size", type=int, default=None, help="Messages per batch.")
@click.option("--ttl", type=int, default=None, help="Connection reuse, seconds (default 300).")
@click.option("--limit-minute", type=int, default=None, help="Messages per minute.")
@click.option("--limit-hour", type=int, default=None, help="Messages per hour.")
@click.option("--limit-day", type=int, default=None, help="Messages per day.")
@click.option("--limit-behavior", type=click.Choice(["defer", "reject"]), default=None)
@api_options
def add_account(
    session: Session,
    account_id: str | None,
    host: str | None,
    port: int | None,
    user: str | None,
    password: str | None,
    **options: Any,
) -> None:
    """Add (or replace) an SMTP account."""
    form = interactive() and None in (account_id, host, port)
    account_id = require(account_id, "Account id", hint="ACCOUNT_ID argument")
    host = require(host, "SMTP host", hint="--host")
    port = require(port, "SMTP port", hint="--port", type=click.IntRange(1, 65535))
    if form and user is None:
        user = optional("SMTP user (empty for none)")
    if user is not None and password is None:
        # A user without a password cannot log in: asked (hidden) on a terminal, else refused
        # naming the option, never saved half-configured (issue 9).
        password = require(None, "SMTP password", hint="--password for --user", hide=True)
    body: dict[str, Any] = {
        "id": account_id,
        "tenant_id": session.tenant,
        "host": host,
        "port": port,
        "user": user,
        "password": password,
        "use_tls": options["use_tls"],
        "tls_verify": options["tls_verify"],
        "batch_size": options["batch_size"],
        "ttl": options["ttl"],
        "limit_per_minute": options["limit_minute"],
        "limit_per_hour": options["limit_hour"],
        "limit_per_day": options["limit_day"],
        "limit_behavior": options["limit_behavior"],
    }
    answer = session.api.post("/account", {k: v for k, v in body.items() if v is not None})
    session.out.done(f"SMTP account {account_id!r} saved for tenant {session.tenant!r}.", answer)


@accounts.command("delete")
@click.argument("account_id", required=False)
@click.option("--force", "-f", is_flag=True, help="Do not ask for confirmation.")
@api_options
def delete_account(session: Session, account_id: str | None, force: bool) -> None:
    """Delete an SMTP account."""
    account_id = require(account_id, "Account id", hint="ACCOUNT_ID argument")
    confirm_or_force(f"Delete SMTP account {account_id!r}?", force=force)
    answer = session.api.delete(f"/account/{account_id}", tenant_id=session.tenant)
    session.out.done(f"SMTP account {account_id!r} deleted.", answer)


@click.group()
def messages() -> None:
    """The tenant's messages."""


MESSAGE_COLUMNS = [
    ("id", "ID"),
    ("status", "Status"),
    ("account_id", "Account"),
    ("to", "To"),
    ("subject", "Subject"),
    ("attempts", "Tries"),
    ("when", "Sent/failed (UTC)"),
    ("error", "Error"),
]


def _message_row(record: dict[str, Any]) -> dict[str, Any]:
    message = record.get("message") or {}
    return {
        **record,
        "to": message.get("to"),
        "subject": message.get("subject"),
        "when": epoch(record.get("error_ts") or record.get("sent_ts")),
    }


@messages.command("list")
@click.option("--status", type=click.Choice(STATUSES), default="all", show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--account", default=None, help="Only this SMTP account's messages.")
@api_options
def list_messages(session: Session, status: str, limit: int, account: str | None) -> None:
    """Messages, by priority then age."""
    answer = session.api.get("/messages", tenant_id=session.tenant, status=status, limit=limit)
    records = [m for m in answer["messages"] if account is None or m.get("account_id") == account]
    rows = [_message_row(m) for m in records]
    session.out.table(rows, MESSAGE_COLUMNS, empty="No messages.", data=records)
    if answer.get("next_cursor") and not session.out.as_json:
        click.echo(f"(more than {limit}: raise --limit to see more)", err=True)


def _pick_account(session: Session, account: str | None) -> str:
    if account:
        return account
    ids = [a["id"] for a in session.api.get("/accounts", tenant_id=session.tenant)["accounts"]]
    if not ids:
        raise CliError(
            f"tenant {session.tenant!r} has no SMTP account: "
            f"`mail-proxy {session.instance} {session.tenant} accounts add` first"
        )
    if len(ids) == 1:
        return str(ids[0])
    return choose("SMTP account", ids, hint="--account")


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--account", default=None, help="SMTP account (default: the tenant's only one).")
@click.option("--priority", default=None, help="0-3 or immediate|high|medium|low.")
@click.option("--batch", "batch_code", default=None, help="Batch code (for suspend/activate).")
@click.option("--id", "message_id", default=None, help="Client id (default: from Message-ID).")
@api_options
def send(
    session: Session,
    file: Path,
    account: str | None,
    priority: str | None,
    batch_code: str | None,
    message_id: str | None,
) -> None:
    """Queue the message in FILE (.eml) for delivery."""
    try:
        payload = message_from_eml(file.read_bytes())
    except (OSError, EmlError) as exc:
        raise CliError(f"{file}: {exc}") from exc
    payload |= {"tenant_id": session.tenant, "account_id": _pick_account(session, account)}
    if message_id:
        payload["id"] = message_id
    if priority is not None:
        payload["priority"] = int(priority) if priority.isdigit() else priority
    if batch_code:
        payload["batch_code"] = batch_code
    answer = session.api.post("/commands/add-messages", {"messages": [payload]})
    if answer.get("rejected"):
        reasons = "; ".join(f"{r['id']}: {r['reason']}" for r in answer["rejected"])
        raise CliError(f"not queued: {reasons}")
    text = f"Queued message {payload['id']!r} via account {payload['account_id']!r}."
    session.out.done(text, {"id": payload["id"], **answer})


@click.command("run-now")
@api_options
def tenant_run_now(session: Session) -> None:
    """Wake senders and reporters now and send this tenant's delivery report at once."""
    answer = session.api.post("/commands/run-now", tenant_id=session.tenant)
    session.out.done("Senders and reporters woken up.", answer)


def _suspension(session: Session, path: str, batch: str | None, verb: str) -> None:
    answer = session.api.post(path, tenant_id=session.tenant, batch_code=batch)
    what = f"Batch {batch!r} of tenant" if batch else "Tenant"
    suspended = ", ".join(answer.get("suspended_batches") or []) or "none"
    text = (
        f"{what} {session.tenant!r} {verb}. Suspended batches: {suspended}; "
        f"unsent messages: {answer.get('pending_messages')}."
    )
    session.out.done(text, answer)


@click.command()
@click.option("--batch", default=None, help="Only this batch code.")
@api_options
def suspend(session: Session, batch: str | None) -> None:
    """Hold the tenant's sending (or one batch); messages stay queued."""
    _suspension(session, "/commands/suspend", batch, "suspended")


@click.command()
@click.option("--batch", default=None, help="Only this batch code.")
@api_options
def activate(session: Session, batch: str | None) -> None:
    """Resume the tenant's sending (or one batch)."""
    _suspension(session, "/commands/activate", batch, "activated")
