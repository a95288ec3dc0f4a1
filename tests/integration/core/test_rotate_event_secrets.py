"""Key rotation covers the secrets this wave added: webhook signing secrets (current and
previous) and provider-feedback credentials."""

from __future__ import annotations

import pytest

from mail_proxy.db.pool import connect
from mail_proxy.db.rotate import reencrypt_all
from mail_proxy.encryption import SecretBox, decode_key, generate_key
from mail_proxy.errors import EncryptionError


async def test_webhook_and_provider_secrets_are_reencrypted(dsn: str) -> None:
    old, new = SecretBox(decode_key(generate_key())), SecretBox(decode_key(generate_key()))
    conn = await connect(dsn)
    try:
        await conn.execute("INSERT INTO tenants (id) VALUES ('acme')")
        await conn.execute(
            "INSERT INTO webhooks (id, tenant_id, url, secret, previous_secret, "
            "previous_secret_until) VALUES ('w', 'acme', 'https://a.example/h', $1, $2, now())",
            old.encrypt("whsec_current"),
            old.encrypt("whsec_previous"),
        )
        await conn.execute(
            "INSERT INTO provider_feedback (tenant_id, provider, config) VALUES "
            "('acme', 'mailgun', $1), ('acme', 'ses', $2)",
            {"token": old.encrypt("mailgun-signing-key")},
            {"topic_arns": ["arn:aws:sns:eu-west-1:123456789012:t"]},
        )
        async with conn.transaction():
            changed = await reencrypt_all(conn, old=old, new=new)
        webhook = await conn.fetchrow("SELECT secret, previous_secret FROM webhooks")
        mailgun = await conn.fetchval(
            "SELECT config FROM provider_feedback WHERE provider = 'mailgun'"
        )
        ses = await conn.fetchval("SELECT config FROM provider_feedback WHERE provider = 'ses'")
    finally:
        await conn.close()
    assert changed == 2  # the webhook row and the mailgun row; ses holds no secret
    assert new.decrypt(webhook["secret"]) == "whsec_current"
    assert new.decrypt(webhook["previous_secret"]) == "whsec_previous"
    assert new.decrypt(mailgun["token"]) == "mailgun-signing-key"
    assert ses == {"topic_arns": ["arn:aws:sns:eu-west-1:123456789012:t"]}
    with pytest.raises(EncryptionError):
        old.decrypt(mailgun["token"])
