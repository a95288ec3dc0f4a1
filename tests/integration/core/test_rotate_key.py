"""`mail-proxy rotate-key`: every stored secret is re-encrypted; only the new key reads them."""

from __future__ import annotations

import pytest

from mail_proxy.db.pool import connect
from mail_proxy.db.rotate import count_stale, reencrypt_stale
from mail_proxy.encryption import SecretBox, decode_key, generate_key
from mail_proxy.errors import EncryptionError, UnknownEncryptionKey
from mail_proxy.redact import open_client_auth, seal_client_auth
from tests.integration.core.cli import cli_env, run_cli

SECRETS = {"smtp": "smtp-pw", "imap": "imap-pw", "bearer": "bearer-tok", "bounce": "bounce-pw"}


async def _seed(dsn: str, box: SecretBox) -> None:
    conn = await connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO tenants (id, client_auth) VALUES ('acme', $1), ('plain', NULL)",
            seal_client_auth(box, {"method": "bearer", "token": SECRETS["bearer"]}),
        )
        await conn.execute(
            "INSERT INTO accounts (id, tenant_id, host, port, username, password, imap_password)"
            " VALUES ('smtp1', 'acme', 'h', 25, 'u', $1, $2),"
            " ('nopw', 'acme', 'h', 25, NULL, NULL, NULL)",
            box.encrypt(SECRETS["smtp"]),
            box.encrypt(SECRETS["imap"]),
        )
        await conn.execute(
            "UPDATE instance SET bounce_imap_password = $1", box.encrypt(SECRETS["bounce"])
        )
    finally:
        await conn.close()


async def _stored(dsn: str) -> dict[str, str]:
    conn = await connect(dsn)
    try:
        account = await conn.fetchrow(
            "SELECT password, imap_password FROM accounts WHERE id = 'smtp1'"
        )
        auth = await conn.fetchval("SELECT client_auth FROM tenants WHERE id = 'acme'")
        bounce = await conn.fetchval("SELECT bounce_imap_password FROM instance")
        unset = await conn.fetchrow(
            "SELECT password, imap_password FROM accounts WHERE id = 'nopw'"
        )
    finally:
        await conn.close()
    assert tuple(unset) == (None, None)
    return {
        "smtp": account["password"],
        "imap": account["imap_password"],
        "bearer": auth["token"],
        "bounce": bounce,
    }


async def test_rotate_key_reencrypts_every_secret(dsn: str) -> None:
    old_key, new_key = generate_key(), generate_key()
    old, new = SecretBox(decode_key(old_key)), SecretBox(decode_key(new_key))
    await _seed(dsn, old)
    before = await _stored(dsn)

    env = cli_env(GMP_DATABASE_URL=dsn, MAIL_PROXY_ENCRYPTION_KEY=old_key)
    code, out, err = await run_cli("rotate-key", "--new-key", new_key, env=env)

    assert code == 0, err
    assert "re-encrypted 3 rows" in out  # one account, one tenant, the instance
    assert new_key not in out + err
    after = await _stored(dsn)
    for name, plain in SECRETS.items():
        assert after[name].startswith("ENC:")
        assert after[name] != before[name]
        assert new.decrypt(after[name]) == plain
        with pytest.raises(EncryptionError):
            old.decrypt(after[name])
    conn = await connect(dsn)
    try:
        auth = await conn.fetchval("SELECT client_auth FROM tenants WHERE id = 'acme'")
    finally:
        await conn.close()
    assert open_client_auth(new, auth) == {"method": "bearer", "token": SECRETS["bearer"]}


async def test_rotate_key_with_the_wrong_current_key_changes_nothing(dsn: str) -> None:
    real_key = generate_key()
    await _seed(dsn, SecretBox(decode_key(real_key)))
    before = await _stored(dsn)

    env = cli_env(GMP_DATABASE_URL=dsn, MAIL_PROXY_ENCRYPTION_KEY=generate_key())
    code, _, err = await run_cli("rotate-key", "--new-key", generate_key(), env=env)

    assert code != 0
    assert "cannot be decrypted" in err
    assert await _stored(dsn) == before


async def test_rotate_key_needs_a_valid_new_key(dsn: str) -> None:
    env = cli_env(GMP_DATABASE_URL=dsn, MAIL_PROXY_ENCRYPTION_KEY=generate_key())
    code, _, err = await run_cli("rotate-key", "--new-key", "short", env=env)
    assert code != 0
    assert "Traceback" not in err


async def test_rotate_key_reads_with_every_key_of_the_ring(dsn: str) -> None:
    """Rows sealed by a previous key (half-finished rotation) are re-encrypted too."""
    old_key, mid_key, new_key = generate_key(), generate_key(), generate_key()
    await _seed(dsn, SecretBox(decode_key(old_key)))
    env = cli_env(
        GMP_DATABASE_URL=dsn,
        MAIL_PROXY_ENCRYPTION_KEY=mid_key,
        MAIL_PROXY_PREVIOUS_ENCRYPTION_KEYS=old_key,
    )
    code, out, err = await run_cli("rotate-key", "--new-key", new_key, env=env)
    assert code == 0, err
    assert "MAIL_PROXY_PREVIOUS_ENCRYPTION_KEYS" in out
    new = SecretBox(decode_key(new_key))
    for name, value in (await _stored(dsn)).items():
        assert new.decrypt(value) == SECRETS[name]


async def test_background_rotation_reseals_only_what_is_not_under_the_primary(dsn: str) -> None:
    old, new = decode_key(generate_key()), decode_key(generate_key())
    await _seed(dsn, SecretBox(old))
    ring = SecretBox(new, previous=[old])
    conn = await connect(dsn)
    try:
        assert await count_stale(conn, box=ring) == 3
        async with conn.transaction():
            assert await reencrypt_stale(conn, box=ring) == 3
        assert await count_stale(conn, box=ring) == 0
        async with conn.transaction():
            assert await reencrypt_stale(conn, box=ring) == 0  # nothing left: nothing written
    finally:
        await conn.close()
    only_new = SecretBox(new)
    for name, value in (await _stored(dsn)).items():
        assert only_new.decrypt(value) == SECRETS[name]


async def test_background_rotation_never_rewrites_what_it_cannot_read(dsn: str) -> None:
    """A value under a key the ring lacks (rotated by someone else) stops the pass unchanged."""
    stranger = decode_key(generate_key())
    await _seed(dsn, SecretBox(stranger))
    before = await _stored(dsn)
    ring = SecretBox(decode_key(generate_key()))
    conn = await connect(dsn)
    try:
        with pytest.raises(UnknownEncryptionKey):
            async with conn.transaction():
                await reencrypt_stale(conn, box=ring)
    finally:
        await conn.close()
    assert await _stored(dsn) == before
