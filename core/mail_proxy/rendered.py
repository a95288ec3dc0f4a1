# SPDX-License-Identifier: Apache-2.0
"""A built message kept for its retries: envelope and RFC 5322 bytes in one `bytea` value.

The sender builds a message once (attachments fetched, MIME rendered) and, when the attempt
must be retried, stores the result in `messages.rendered`; every retry sends those same bytes
(same Message-ID, Date and boundaries) without fetching or building again. Once the message is
final (`sent`/`error`) the column is cleared.

Layout: the line `MP1`, one line of JSON (the envelope: `envelope_from`, `recipients`,
`message_id`, `smtputf8`, `utf8_recipients`), then the message bytes unchanged.
"""

from __future__ import annotations

import json

from mail_proxy.mime import WireMessage

_MAGIC = b"MP1\n"


class RenderedFormatError(ValueError):
    """Stored bytes are not a packed message (written by another version, or damaged)."""


def pack(wire: WireMessage) -> bytes:
    """The stored form of `wire`."""
    envelope = {
        "envelope_from": wire.envelope_from,
        "recipients": wire.recipients,
        "message_id": wire.message_id,
        "smtputf8": wire.smtputf8,
        "utf8_recipients": sorted(wire.utf8_recipients),
    }
    header = json.dumps(envelope, ensure_ascii=True, separators=(",", ":")).encode()
    return _MAGIC + header + b"\n" + wire.data


def unpack(stored: bytes) -> WireMessage:
    """The message `pack` stored; raises `RenderedFormatError` when `stored` is not one."""
    if not stored.startswith(_MAGIC):
        raise RenderedFormatError("not a packed message")
    header, sep, data = stored[len(_MAGIC) :].partition(b"\n")
    if not sep:
        raise RenderedFormatError("packed message without body")
    try:
        envelope = json.loads(header)
        return WireMessage(
            envelope_from=str(envelope["envelope_from"]),
            recipients=[str(r) for r in envelope["recipients"]],
            data=data,
            message_id=str(envelope["message_id"]),
            smtputf8=bool(envelope.get("smtputf8", False)),
            utf8_recipients=frozenset(str(r) for r in envelope.get("utf8_recipients", ())),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RenderedFormatError(f"unreadable packed message: {exc}") from exc
