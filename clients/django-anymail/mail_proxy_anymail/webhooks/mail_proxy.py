# SPDX-License-Identifier: Apache-2.0
"""Anymail tracking webhook for mail-proxy's delivery reports (the sync protocol).

    # urls.py
    from mail_proxy_anymail.webhooks.mail_proxy import MailProxyTrackingWebhookView
    urlpatterns = [path("mail-proxy/sync", MailProxyTrackingWebhookView.as_view())]

    # settings.py: what the tenant's client_auth holds ({"method": "basic", ...})
    ANYMAIL = {..., "WEBHOOK_SECRET": "user:password"}

mail-proxy POSTs `{"delivery_report": [items]}` to the tenant's `client_base_url` +
`client_sync_path`; the view checks HTTP basic auth (Anymail's WEBHOOK_SECRET; a bearer token in
`MAIL_PROXY_WEBHOOK_TOKEN` works too), sends one Anymail `tracking` signal per event and
answers `{"ok": true, "queued": 0}`. Events: sent → "sent", deferred → "deferred",
bounce → "bounced" (naming the bounced recipient when the item's `recipients` shows which),
error → "failed" (or "rejected" when every recipient was refused or the address is
suppressed), per-recipient refusals → "rejected" for that recipient; PEC receipts → "queued"
(acceptance), "delivered" (delivery), "failed" (error, timeout), "deferred" (delivery
warning). `message_id` is the mail-proxy message id that `anymail_status.message_id` gave at
send time. A report can repeat events: make receivers idempotent (use `event_id`).
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

from anymail.exceptions import AnymailWebhookValidationFailure
from anymail.signals import AnymailTrackingEvent, EventType, RejectReason, tracking
from anymail.utils import get_anymail_setting
from anymail.webhooks.base import AnymailBaseWebhookView
from django.http import HttpRequest, HttpResponse, JsonResponse

from mail_proxy_client import ReportItem, ReportReceiver

_PEC = {
    "pec_acceptance": EventType.QUEUED,
    "pec_delivery": EventType.DELIVERED,
    "pec_error": EventType.FAILED,
    "pec_timeout": EventType.FAILED,
    "pec_delivery_warning": EventType.DEFERRED,
}
_REFUSALS = ("recipient suppressed", "invalid address")


class MailProxyTrackingWebhookView(AnymailBaseWebhookView):
    """Delivery reports → Anymail tracking signals."""

    esp_name = "Mail Proxy"
    signal = tracking
    warn_if_no_basic_auth = False  # a bearer token may be configured instead

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bearer_token = get_anymail_setting(
            "webhook_token", esp_name=self.esp_name, kwargs=kwargs, default=None
        )

    def validate_request(self, request: HttpRequest) -> None:
        if self.bearer_token:
            given = request.META.get("HTTP_AUTHORIZATION", "").encode()
            if not hmac.compare_digest(given, f"Bearer {self.bearer_token}".encode()):
                raise AnymailWebhookValidationFailure("mail-proxy webhook: wrong bearer token")
        elif not self.basic_auth:
            raise AnymailWebhookValidationFailure(
                "mail-proxy webhook: set ANYMAIL WEBHOOK_SECRET (basic auth) or "
                "MAIL_PROXY_WEBHOOK_TOKEN (bearer), the credentials of the tenant's client_auth"
            )
        # Basic auth (WEBHOOK_SECRET) is checked by AnymailBasicAuthMixin's own validator.

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        if response.status_code >= 400:
            return response
        # The sync protocol's answer: nothing left queued on this side.
        return JsonResponse({"ok": True, "queued": 0})

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        try:
            items = ReportReceiver.parse(request.body)
        except ValueError as exc:
            raise AnymailWebhookValidationFailure(f"not a delivery report: {exc}") from exc
        events: list[AnymailTrackingEvent] = []
        for item in items:
            events.extend(self.esp_to_anymail_events(item))
        return events

    def esp_to_anymail_events(self, item: ReportItem) -> list[AnymailTrackingEvent]:
        when = datetime.fromtimestamp(item.timestamp, UTC) if item.timestamp else None
        raw = item.model_dump(exclude_none=True)
        base = {
            "timestamp": when,
            "message_id": item.id,
            "esp_event": raw,
        }
        events: list[AnymailTrackingEvent] = []
        if item.kind == "bounce":
            return [self._bounce(item, base)]
        refused = [r for r in item.recipients or [] if r.status == "refused"]
        for recipient in refused:
            events.append(
                AnymailTrackingEvent(
                    event_type=EventType.REJECTED,
                    event_id=f"{item.id}:{item.kind}:{item.timestamp}:{recipient.address}",
                    recipient=recipient.address,
                    reject_reason=RejectReason.BOUNCED,
                    mta_response=recipient.reason,
                    description=recipient.reason,
                    **base,
                )
            )
        if refused and item.kind == "error":
            return events  # every refusal is already an event of its own
        event_type, reject_reason = self._classify(item)
        events.append(
            AnymailTrackingEvent(
                event_type=event_type,
                event_id=f"{item.id}:{item.kind}:{item.timestamp}",
                reject_reason=reject_reason,
                description=item.reason,
                **base,
            )
        )
        return events

    @staticmethod
    def _bounce(item: ReportItem, base: dict[str, Any]) -> AnymailTrackingEvent:
        """One "bounced" event. Its `recipients` list (a message with several recipients)
        repeats earlier refusals, already reported at their time: the bounced recipient is the
        refused one whose reason is this bounce's (`"<type> bounce: <bounce_reason>"`)."""
        suffix = f"bounce: {item.bounce_reason}" if item.bounce_reason else " bounce"
        bounced = [
            r.address
            for r in item.recipients or []
            if r.status == "refused" and (r.reason or "").endswith(suffix)
        ]
        return AnymailTrackingEvent(
            event_type=EventType.BOUNCED,
            event_id=f"{item.id}:{item.kind}:{item.timestamp}",
            recipient=bounced[0] if len(bounced) == 1 else None,
            reject_reason=RejectReason.BOUNCED,
            description=item.reason,
            mta_response=f"{item.bounce_code} {item.bounce_reason}",
            **base,
        )

    @staticmethod
    def _classify(item: ReportItem) -> tuple[str, str | None]:
        if item.kind == "sent":
            return EventType.SENT, None
        if item.kind == "deferred":
            return EventType.DEFERRED, None
        if item.kind == "pec":
            return _PEC.get(item.pec_event or "", EventType.UNKNOWN), None
        reason = (item.error or "").lower()
        if any(marker in reason for marker in _REFUSALS):
            return EventType.REJECTED, RejectReason.INVALID
        return EventType.FAILED, RejectReason.OTHER
