"""A running process follows the settings the operator stores in `instance.config`."""

import asyncio

from mail_proxy.config import Settings
from mail_proxy.db.pool import create_pool
from mail_proxy.db.rotate import reencrypt_all
from mail_proxy.encryption import SecretBox, decode_key, generate_key
from mail_proxy.instance_settings import LiveSettings, follow_instance_settings
from mail_proxy.redact import open_client_auth, seal_client_auth


async def test_refresh_applies_and_follows_the_stored_document(dsn: str) -> None:
    box = SecretBox(decode_key(generate_key()))
    pool = await create_pool(dsn)
    settings = Settings(instance_settings_refresh_seconds=0.05)
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE instance SET config = $1 WHERE id = 1",
                {"report_retention_seconds": 60, "batch_size_per_account": 7},
            )
        stop = asyncio.Event()
        task = asyncio.create_task(
            follow_instance_settings(LiveSettings(settings), pool, box, stop)
        )
        for _ in range(100):
            if settings.batch_size_per_account == 7:
                break
            await asyncio.sleep(0.02)
        assert settings.report_retention_seconds == 60
        async with pool.acquire() as conn:
            await conn.execute("UPDATE instance SET config = '{}'::jsonb WHERE id = 1")
        for _ in range(100):
            if settings.batch_size_per_account == 50:
                break
            await asyncio.sleep(0.02)
        assert settings.batch_size_per_account == 50
        assert settings.report_retention_seconds == 604_800
        stop.set()
        await task
    finally:
        await pool.close()


async def test_rotate_key_reencrypts_the_stored_sync_credentials(dsn: str) -> None:
    old = SecretBox(decode_key(generate_key()))
    new = SecretBox(decode_key(generate_key()))
    pool = await create_pool(dsn)
    try:
        async with pool.acquire() as conn:
            sealed = seal_client_auth(old, {"method": "bearer", "token": "sync-secret"})
            await conn.execute(
                "UPDATE instance SET config = $1 WHERE id = 1", {"client_sync_auth": sealed}
            )
            async with conn.transaction():
                await reencrypt_all(conn, old=old, new=new)
            config = await conn.fetchval("SELECT config FROM instance WHERE id = 1")
        assert config["client_sync_auth"]["token"].startswith("ENC:")
        assert open_client_auth(new, config["client_sync_auth"])["token"] == "sync-secret"
    finally:
        await pool.close()
