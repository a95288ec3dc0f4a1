# SPDX-License-Identifier: BUSL-1.1
"""Provider feedback: bounce and complaint notifications from the relay's provider.

One module per provider verifies a notification and turns it into `FeedbackEvent`s; nothing
here does I/O (the SNS signing certificate is fetched by the caller and handed in):

- `ses`: Amazon SES through SNS (RSA signature over the SNS canonical string, SignatureVersion
  1 = SHA1, 2 = SHA256; topic allow-list; SubscriptionConfirmation);
- `sendgrid`: the signed Event Webhook (ECDSA P-256 / SHA-256 over timestamp + body);
- `mailgun`: HMAC-SHA256 of timestamp + token with the webhook signing key;
- `postmark`: HTTP basic auth or a shared token header (Postmark signs nothing).

`mail_proxy.db.provider_feedback` stores them as the same `bounce` events and suppression
entries as IMAP bounces (complaints suppress too).
"""
