# SPDX-License-Identifier: Apache-2.0
"""Delivery-report items, exactly as the reference sends them (section 5.2).

    sent      {"id", "sent_ts"}
    error     {"id", "error_ts", "error"}
    deferred  {"id", "deferred_ts", "deferred_reason"}   deferred_ts = the new retry time
    bounce    {"id", "bounce_ts", "bounce_type", "bounce_code", "bounce_reason"}
    pec_*     {"id", "pec_event", "pec_ts", "pec_details"?}

No tenant id or pk in the items; `id` is the client's message id.

Addition (SPEC section 13): when some recipient of the message was refused or is deferred,
the item also carries `recipients`: `[{"address", "status", "code", "reason"}]`, as recorded
with the event (`metadata.recipients`). Items of all-accepted messages are exactly v0.6.
"""

from __future__ import annotations

from typing import Any

from mail_proxy.db.reports import PendingEvent


def report_item(event: PendingEvent) -> dict[str, Any] | None:
    """The wire item for an event, or None for an event type clients are not told about."""
    item = _legacy_item(event)
    recipients = (event.metadata or {}).get("recipients")
    if item is not None and recipients:
        item["recipients"] = recipients
    return item


def _legacy_item(event: PendingEvent) -> dict[str, Any] | None:
    meta = event.metadata or {}
    kind = event.event_type
    if kind == "sent":
        return {"id": event.message_id, "sent_ts": event.event_ts}
    if kind == "error":
        return {"id": event.message_id, "error_ts": event.event_ts, "error": event.description}
    if kind == "deferred":
        return {
            "id": event.message_id,
            "deferred_ts": meta.get("deferred_ts", event.event_ts),
            "deferred_reason": event.description,
        }
    if kind == "bounce":
        code = meta.get("bounce_code")
        return {
            "id": event.message_id,
            "bounce_ts": event.event_ts,
            "bounce_type": meta.get("bounce_type"),
            "bounce_code": str(code) if code is not None else None,
            "bounce_reason": event.description,
        }
    if kind.startswith("pec_"):
        item: dict[str, Any] = {"id": event.message_id, "pec_event": kind, "pec_ts": event.event_ts}
        if event.description:
            item["pec_details"] = event.description
        return item
    return None


def report_body(events: list[PendingEvent]) -> dict[str, list[dict[str, Any]]]:
    items = [item for item in map(report_item, events) if item is not None]
    return {"delivery_report": items}
