# SPDX-License-Identifier: Apache-2.0
"""What a command prints: rich tables for people, plain JSON (`--json`) for scripts.

In JSON mode stdout carries exactly one JSON document and nothing else; notes for people go to
stderr or are left out.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

# Not a terminal (a pipe, a log): wide enough that ids and URLs are never wrapped or cut.
_PIPE_WIDTH = 240


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def epoch(value: Any) -> str | None:
    """Epoch seconds as a readable UTC time; None stays None."""
    if value is None:
        return None
    return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%d %H:%M:%S")


class Output:
    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        terminal = sys.stdout.isatty()
        self.console = Console(
            width=None if terminal else _PIPE_WIDTH, highlight=False, soft_wrap=not terminal
        )

    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        sys.stdout.flush()

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Iterable[tuple[str, str]],
        *,
        title: str | None = None,
        empty: str = "nothing to show",
        data: Any = None,
    ) -> None:
        """`rows` as a table of (key, header) columns; in JSON mode `data` (default: the rows)."""
        if self.as_json:
            self.json(list(rows) if data is None else data)
            return
        if not rows:
            self.console.print(empty)
            return
        table = Table(title=title, title_justify="left")
        cols = list(columns)
        for _, header in cols:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(row.get(key)) for key, _ in cols))
        self.console.print(table)

    def fields(self, record: Mapping[str, Any], *, title: str | None = None) -> None:
        """One record as a two-column table of its fields."""
        if self.as_json:
            self.json(dict(record))
            return
        table = Table(title=title, title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for key, value in record.items():
            table.add_row(key, _cell(value))
        self.console.print(table)

    def done(self, text: str, data: Any) -> None:
        """A line for people, or `data` as JSON."""
        if self.as_json:
            self.json(data)
        else:
            self.console.print(text, markup=False)
