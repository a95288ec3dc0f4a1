# SPDX-License-Identifier: Apache-2.0
"""How `mail-proxy WORD ...` is read: a command, else an instance name, then a tenant name.

`mail-proxy start dev` runs the command `start`; `mail-proxy dev tenants list` finds no command
`dev`, so `dev` names an instance and `tenants list` is one of its verbs; in
`mail-proxy dev acme accounts list`, `acme` is not an instance verb, so it names a tenant.
Commands always win, which is why `start` refuses instance names that are command names.
"""

from __future__ import annotations

import os

import click

from mail_proxy.ids import valid_tenant_id
from mail_proxy_cli import instances
from mail_proxy_cli.admin import run_now, tenants
from mail_proxy_cli.lifecycle import delete, info, list_instances, restart, start, stop, token
from mail_proxy_cli.suppression_verbs import suppressions
from mail_proxy_cli.tenant_verbs import (
    accounts,
    activate,
    api_key,
    messages,
    send,
    suspend,
    tenant_info,
    tenant_run_now,
)

LIFECYCLE_COMMANDS = [start, stop, restart, list_instances, delete]
INSTANCE_VERBS = [info, token, tenants, run_now]
TENANT_VERBS = [
    tenant_info,
    api_key,
    accounts,
    messages,
    suppressions,
    send,
    tenant_run_now,
    suspend,
    activate,
]


def _remote_requested(args: list[str]) -> bool:
    return bool(os.environ.get("GMP_URL")) or any(
        a == "--url" or a.startswith("--url=") for a in args
    )


class TenantScope(click.Group):
    """`mail-proxy NAME TENANT ...`: verbs on one tenant."""

    scope = "tenant"

    def __init__(self, tenant: str) -> None:
        super().__init__(
            name=tenant,
            help=f"Verbs on tenant {tenant!r}.",
            commands=TENANT_VERBS,
        )


class InstanceScope(click.Group):
    """`mail-proxy NAME ...`: verbs on one instance; an unknown word names a tenant."""

    scope = "instance"

    def __init__(self, instance: str) -> None:
        super().__init__(
            name=instance,
            help=f"Verbs on instance {instance!r}. A tenant's verbs: "
            f"`mail-proxy {instance} TENANT --help`.",
            commands=INSTANCE_VERBS,
        )

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and valid_tenant_id(cmd_name):
            return TenantScope(cmd_name)
        return found


class MailProxyGroup(click.Group):
    """The top-level group: its own commands first, then instance names."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and instances.NAME_PATTERN.match(cmd_name):
            return InstanceScope(cmd_name)
        return found

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        word = args[0]
        known = word in self.commands or word.startswith("-") or ctx.resilient_parsing
        if not known and not instances.exists(word) and not _remote_requested(args):
            local = ", ".join(i.name for i in instances.all_instances()) or "none"
            raise click.UsageError(
                f"no command or instance named {word!r} "
                f"(instances in {instances.home_dir()}: {local})",
                ctx,
            )
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_commands(ctx, formatter)
        with formatter.section("Instance and tenant verbs"):
            formatter.write_dl(
                [
                    ("NAME info | token", "An instance's state; how to authenticate."),
                    ("NAME tenants list|add|show|update|delete", "Tenants (admin)."),
                    ("NAME run-now", "Wake senders and reporters."),
                    ("NAME TENANT accounts list|add|delete", "SMTP accounts."),
                    ("NAME TENANT messages list", "Messages [--status --limit]."),
                    (
                        "NAME TENANT suppressions list|add|remove",
                        "Addresses never sent to (hard bounces, manual).",
                    ),
                    ("NAME TENANT send FILE.eml", "Queue a message [--account]."),
                    ("NAME TENANT api-key rotate|revoke", "The tenant's API key."),
                    ("NAME TENANT run-now | suspend | activate", "Sending [--batch]."),
                ]
            )
            formatter.write_paragraph()
            formatter.write_text(
                "NAME is a local instance (see `list`); with --url and --token "
                "(GMP_URL, GMP_API_TOKEN) the same verbs reach any instance."
            )
