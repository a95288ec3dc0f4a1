# SPDX-License-Identifier: Apache-2.0
"""Anymail ESP backend for mail-proxy.

    EMAIL_BACKEND = "mail_proxy_anymail.backends.mail_proxy.EmailBackend"
    ANYMAIL = {
        "MAIL_PROXY_API_URL": "https://mail.example.org",
        "MAIL_PROXY_API_KEY": "<the tenant's API key>",
        "MAIL_PROXY_TENANT_ID": "acme",
        "MAIL_PROXY_ACCOUNT_ID": "smtp1",     # the SMTP account messages go out through
    }

Each Django message becomes one mail-proxy message (`POST /commands/add-messages`, through
`mail_proxy_client`): from, to, cc, bcc, reply-to, extra headers, the text body, one HTML
alternative (sent as multipart/alternative via `text_body`), attachments (base64), Anymail's
`tags` → `batch_code` (one tag), `send_at` → `deferred_ts`, and `esp_extra` merged into the
message (e.g. `{"priority": "high", "account_id": "other"}`). The mail-proxy message id is
`anymail_status.message_id`; delivery reports carry it back (see `webhooks.mail_proxy`).
A message mail-proxy refuses comes back with status "rejected" for its recipients (and raises
`AnymailRecipientsRefused`, like Django's SMTP backend, unless IGNORE_RECIPIENT_STATUS).
"""

from __future__ import annotations

import uuid
from typing import Any

from anymail.backends.base import AnymailBaseBackend, BasePayload
from anymail.exceptions import AnymailAPIError
from anymail.message import AnymailRecipientStatus
from anymail.utils import get_anymail_setting

from mail_proxy_client import AddMessagesResult, Client, MailProxyError


class EmailBackend(AnymailBaseBackend):
    """Sends through mail-proxy's REST API."""

    esp_name = "Mail Proxy"  # settings: ANYMAIL["MAIL_PROXY_..."]

    def __init__(self, **kwargs: Any) -> None:
        esp = self.esp_name
        self.api_url = get_anymail_setting("api_url", esp_name=esp, kwargs=kwargs)
        self.api_key = get_anymail_setting("api_key", esp_name=esp, kwargs=kwargs)
        self.tenant_id = get_anymail_setting("tenant_id", esp_name=esp, kwargs=kwargs)
        self.account_id = get_anymail_setting("account_id", esp_name=esp, kwargs=kwargs)
        self.timeout_seconds = get_anymail_setting(
            "timeout_seconds", esp_name=esp, kwargs=kwargs, default=30.0
        )
        self.max_retries = get_anymail_setting(
            "max_retries", esp_name=esp, kwargs=kwargs, default=3
        )
        super().__init__(**kwargs)
        self._client: Client | None = None

    def open(self) -> bool:
        if self._client is not None:
            return False
        self._client = Client(
            self.api_url,
            api_token=self.api_key,
            tenant_id=self.tenant_id,
            timeout_seconds=self.timeout_seconds,
            max_retries=self.max_retries,
        )
        return True

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def build_message_payload(self, message: Any, defaults: dict[str, Any]) -> MailProxyPayload:
        return MailProxyPayload(message, defaults, self)

    def post_to_esp(self, payload: MailProxyPayload, message: Any) -> AddMessagesResult:
        created = self.open()
        assert self._client is not None
        try:
            return self._client.add_messages([payload.data])
        except MailProxyError as exc:
            raise AnymailAPIError(
                f"mail-proxy refused the request: {exc}",
                email_message=message,
                payload=payload,
                backend=self,
            ) from exc
        finally:
            if created:
                self.close()

    def parse_recipient_status(
        self, response: AddMessagesResult, payload: MailProxyPayload, message: Any
    ) -> dict[str, AnymailRecipientStatus]:
        message_id = payload.data["id"]
        status = "queued" if response.queued else "rejected"
        return {
            address: AnymailRecipientStatus(message_id=message_id, status=status)
            for address in payload.recipients
        }


class MailProxyPayload(BasePayload):
    """One mail-proxy message (the add-messages item shape) built from a Django message."""

    backend: EmailBackend

    def init_payload(self) -> None:
        self.data: dict[str, Any] = {
            "id": f"anymail-{uuid.uuid4().hex}",
            "tenant_id": self.backend.tenant_id,
            "account_id": self.backend.account_id,
            "to": [],
            "subject": "",
            "body": "",
        }
        self.recipients: list[str] = []
        self._text: str | None = None
        self._html: str | None = None

    def _format(self, email: Any) -> str:
        return str(email.format(idna_encode=self.backend.idna_encode))

    def set_from_email(self, email: Any) -> None:
        self.data["from"] = self._format(email)

    def set_recipients(self, recipient_type: str, emails: list[Any]) -> None:
        if emails:
            self.data[recipient_type] = [self._format(e) for e in emails]
            self.recipients.extend(e.addr_spec for e in emails)

    def set_subject(self, subject: str) -> None:
        self.data["subject"] = subject

    def set_reply_to(self, emails: list[Any]) -> None:
        if emails:
            self.data["reply_to"] = [self._format(e) for e in emails]

    def set_extra_headers(self, headers: dict[str, str]) -> None:
        headers = dict(headers)
        message_id = headers.pop("Message-ID", None) or headers.pop("Message-Id", None)
        if message_id:
            self.data["message_id"] = message_id
        if headers:
            self.data["headers"] = headers

    def set_text_body(self, body: str) -> None:
        self._text = body
        self._bodies()

    def set_html_body(self, body: str) -> None:
        if self._html is not None:
            self.unsupported_feature("multiple html parts")
        self._html = body
        self._bodies()

    def _bodies(self) -> None:
        """HTML (with the text as its plain alternative) when there is HTML, else text."""
        if self._html is not None:
            self.data.update(body=self._html, content_type="html")
            if self._text:
                self.data["text_body"] = self._text
        else:
            self.data.update(body=self._text or "", content_type="plain")

    def add_alternative(self, content: str, mimetype: str) -> None:
        if mimetype.lower() == "text/html":
            self.set_html_body(content)
        else:
            self.unsupported_feature(f"alternative part with type '{mimetype}'")

    def add_attachment(self, attachment: Any) -> None:
        if attachment.inline:
            self.unsupported_feature("inline attachments")
        self.data.setdefault("attachments", []).append(
            {
                "filename": attachment.name or "attachment",
                "storage_path": attachment.b64content,
                "fetch_mode": "base64",
                "mime_type": attachment.mimetype,
            }
        )

    def set_send_at(self, send_at: Any) -> None:
        self.data["deferred_ts"] = int(send_at.timestamp())

    def set_tags(self, tags: list[str]) -> None:
        if len(tags) > 1:
            self.unsupported_feature("multiple tags (mail-proxy has one batch_code)")
        if tags:
            self.data["batch_code"] = tags[0]

    def set_esp_extra(self, extra: dict[str, Any]) -> None:
        self.data.update(extra)

    def set_envelope_sender(self, email: Any) -> None:
        self.data["return_path"] = email.addr_spec
