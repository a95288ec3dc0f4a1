"""A minimal Django site for the Anymail tests: the mail-proxy tracking webhook at its URL."""

from django.urls import path

from mail_proxy_anymail.webhooks.mail_proxy import MailProxyTrackingWebhookView

urlpatterns = [path("mail-proxy/sync", MailProxyTrackingWebhookView.as_view())]
