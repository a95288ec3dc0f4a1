# SPDX-License-Identifier: BUSL-1.1
"""The body footer listing offloaded attachments, worded as the reference's (section 6.6).

HTML bodies get an `<hr>`, a bold heading, one `<li>` per file and an expiry note; plain bodies
get `---`, the same heading, `  - name (x.x MB): url` lines and the note. A message with both an
HTML body and a `text_body` alternative gets each footer in its own part. Unlike the reference,
names and URLs are escaped in HTML and stripped of line breaks in text.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mail_proxy.large_files.policy import size_mb

HEADING = "Large attachments available for download:"
EXPIRY_NOTE = "Links will expire after the configured retention period."


@dataclass(frozen=True)
class OffloadedLink:
    """One attachment replaced by a link."""

    filename: str
    size_bytes: int
    url: str


def _one_line(text: str) -> str:
    return " ".join(text.split())


def html_footer(links: Sequence[OffloadedLink]) -> str:
    items = "".join(
        f'<li><a href="{html.escape(link.url, quote=True)}">{html.escape(link.filename)}</a> '
        f"({size_mb(link.size_bytes):.1f} MB)</li>"
        for link in links
    )
    return (
        '<hr style="margin-top: 20px;">'
        f"<p><strong>{HEADING}</strong></p>"
        f"<ul>{items}</ul>"
        f"<p><em>{EXPIRY_NOTE}</em></p>"
    )


def text_footer(links: Sequence[OffloadedLink]) -> str:
    lines = "\n".join(
        f"  - {_one_line(link.filename)} ({size_mb(link.size_bytes):.1f} MB): {link.url}"
        for link in links
    )
    return f"\n\n---\n{HEADING}\n{lines}\n({EXPIRY_NOTE})"


def with_footer(payload: Mapping[str, Any], links: Sequence[OffloadedLink]) -> dict[str, Any]:
    """A copy of the stored payload whose body (and `text_body`, if any) ends with the footer."""
    out = dict(payload)
    if not links:
        return out
    if payload.get("content_type") == "html":
        out["body"] = str(payload.get("body") or "") + html_footer(links)
        if payload.get("text_body"):
            out["text_body"] = str(payload["text_body"]) + text_footer(links)
    else:
        out["body"] = str(payload.get("body") or "") + text_footer(links)
    return out
