# SPDX-License-Identifier: Apache-2.0
"""django-anymail support for mail-proxy: `backends.mail_proxy.EmailBackend` sends, and
`webhooks.mail_proxy.MailProxyTrackingWebhookView` turns delivery reports into Anymail
`tracking` signals. Laid out like Anymail's own `backends/<esp>.py` and `webhooks/<esp>.py`."""
