# SPDX-License-Identifier: Apache-2.0
"""Asking for what is missing, only when someone can answer.

With a terminal on stdin a missing required value is asked for (secrets typed hidden, never
echoed); without one (a script, a pipe, CI) the command stops at once with a usage error naming
the option to pass, exit status 2. Prompts go to stderr so `--json` output stays clean.
"""

from __future__ import annotations

import sys
from typing import Any

import click


def interactive() -> bool:
    return sys.stdin.isatty()


def require(value: Any, label: str, *, hint: str, type: Any = None, hide: bool = False) -> Any:
    """`value` if given, else asked for on a terminal, else a usage error naming `hint`."""
    if value is not None and value != "":
        return value
    if not interactive():
        raise click.UsageError(f"missing {hint} (no terminal to ask on)")
    return click.prompt(label, type=type, hide_input=hide, err=True)


def optional(label: str, *, hide: bool = False) -> str | None:
    """Ask for an optional text on a terminal; an empty answer (or no terminal) gives None."""
    if not interactive():
        return None
    answer: str = click.prompt(label, default="", show_default=False, hide_input=hide, err=True)
    return answer.strip() or None


def choose(label: str, choices: list[str], *, hint: str) -> str:
    if not interactive():
        raise click.UsageError(
            f"missing {hint}: one of {', '.join(choices)} (no terminal to ask on)"
        )
    answer: str = click.prompt(label, type=click.Choice(choices), err=True)
    return answer


def confirm_or_force(question: str, *, force: bool) -> None:
    """Go on when `--force` was given or the user says yes; scripts must pass `--force`."""
    if force:
        return
    if not interactive():
        raise click.UsageError(f"{question} Pass --force to confirm (no terminal to ask on)")
    if not click.confirm(question, default=False, err=True):
        raise click.Abort()
