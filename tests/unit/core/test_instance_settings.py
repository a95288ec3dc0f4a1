"""Stored MailProxyInstance settings laid over the environment's settings."""

from pydantic import SecretStr

from mail_proxy.config import Settings
from mail_proxy.encryption import SecretBox, decode_key, generate_key
from mail_proxy.instance_settings import LiveSettings, overrides_from_config
from mail_proxy.redact import seal_client_auth

BOX = SecretBox(decode_key(generate_key()))


def test_stored_values_win_and_fall_back_to_the_environment_when_removed() -> None:
    settings = Settings(max_retries=5, batch_size_per_account=50)
    live = LiveSettings(settings)
    changed = live.apply({"max_retries": 2, "retry_delays_seconds": [1, 2]})
    assert sorted(changed) == ["max_retries", "retry_delays_seconds"]
    assert settings.max_retries == 2
    assert settings.retry_delays_seconds == (1, 2)
    assert settings.batch_size_per_account == 50
    live.apply({})
    assert settings.max_retries == 5
    assert settings.retry_delays_seconds == (60, 300, 900, 3600, 7200)


def test_invalid_stored_value_keeps_the_base() -> None:
    settings = Settings(max_retries=5)
    LiveSettings(settings).apply({"max_retries": "many"})
    assert settings.max_retries == 5


def test_sync_credentials_are_decrypted_into_the_sync_fields() -> None:
    sealed = seal_client_auth(BOX, {"method": "bearer", "token": "t0k"})
    found = overrides_from_config(
        {"client_sync_url": "http://127.0.0.1:9/sync", "client_sync_auth": sealed}, BOX
    )
    settings = Settings()
    LiveSettings(settings).apply(found)
    assert settings.client_sync_url == "http://127.0.0.1:9/sync"
    assert settings.client_sync_token == SecretStr("t0k")

    basic = seal_client_auth(BOX, {"method": "basic", "user": "u", "password": "p"})
    found = overrides_from_config({"client_sync_auth": basic}, BOX)
    assert found["client_sync_user"] == "u"
    assert found["client_sync_password"] == "p"
