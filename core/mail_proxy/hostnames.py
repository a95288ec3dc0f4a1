# SPDX-License-Identifier: Apache-2.0
"""What a tenant may write as a server's host (an SMTP account, an IMAP mailbox).

A host is a DNS name (RFC 1123 section 2.1: labels of letters, digits and hyphens, underscores
tolerated, not starting or ending with a hyphen, at most 63 octets each, 253 in all; names with
non-ASCII letters are checked in their IDNA A-label form, RFC 5890) or an IP address literal
(IPv6 with or without brackets). No scheme, port, path or trailing dot: `smtp.example.org:587`
is refused with a reason saying so, instead of failing later as an unreachable destination.
"""

from __future__ import annotations

import ipaddress
import re

# Underscores are not in RFC 1123 but in real internal names (container hosts): tolerated.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def host_problem(value: str) -> str | None:
    """Why `value` is not a host name or IP literal, or None when it is."""
    text = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(text)
        return None
    except ValueError:
        pass
    if "://" in value or "/" in value:
        return "a host name only: no scheme or path (e.g. smtp.example.org)"
    if "[" in value or "]" in value:
        return "not a valid host name or IP address"
    if ":" in value:
        return "a host name only: the port goes in `port`"
    try:
        ascii_name = value.encode("idna").decode("ascii")
    except UnicodeError:
        return "not a valid host name"
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in labels):
        return "not a valid host name (letters, digits, hyphens and dots; no empty label)"
    return None
