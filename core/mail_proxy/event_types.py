# SPDX-License-Identifier: Apache-2.0
"""The event types the service emits: the one list a webhook may subscribe to (SPEC section 13).

Message events are rows of `message_events` (the history and the sync protocol's items):
delivery outcomes (`sent`, `deferred`, `error`; SPEC section 5), `bounce` (DSNs and provider
feedback, reference section 10) and the PEC receipts and timeouts (reference section 11,
`mail_proxy.inbound.pec`). `queued` is the history's first line, read from the message row, never
stored, so nothing can be delivered for it. Recipient events (migration 0015) are sent only to
endpoints that name them. `pec_*` subscribes to every PEC event (the webhook trigger's wildcard).
"""

from __future__ import annotations

MESSAGE_EVENT_TYPES: tuple[str, ...] = (
    "sent",
    "deferred",
    "error",
    "bounce",
    "pec_acceptance",
    "pec_delivery",
    "pec_delivery_warning",
    "pec_error",
    "pec_timeout",
    "pec_delivery_timeout",
)
RECIPIENT_EVENT_TYPES: tuple[str, ...] = (
    "recipient_accepted",
    "recipient_refused",
    "recipient_deferred",
)
PEC_WILDCARD = "pec_*"
WEBHOOK_EVENT_TYPES: tuple[str, ...] = (
    *MESSAGE_EVENT_TYPES,
    PEC_WILDCARD,
    *RECIPIENT_EVENT_TYPES,
)


def unknown_event_type(name: str) -> str | None:
    """None when a webhook may subscribe to `name`, else the sentence that refuses it, naming
    the value and listing every valid one."""
    if name in WEBHOOK_EVENT_TYPES:
        return None
    shown = name if len(name) <= 64 else name[:64] + "..."
    return f"unknown event type {shown!r}; valid event types: {', '.join(WEBHOOK_EVENT_TYPES)}"
