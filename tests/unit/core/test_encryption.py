"""AES-256-GCM secrets in the reference's `ENC:` format, and where the key comes from."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from mail_proxy.encryption import (
    KEY_ENV,
    PREVIOUS_KEYS_ENV,
    SecretBox,
    decode_key,
    generate_key,
    key_id,
    load_box,
    load_key,
    stored_key_id,
)
from mail_proxy.errors import ConfigError, EncryptionError, NoEncryptionKey, UnknownEncryptionKey


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(decode_key(generate_key()))


def test_stored_form_is_enc_key_id_and_base64_of_nonce_ciphertext_and_tag(box: SecretBox) -> None:
    stored = box.encrypt("hunter2")
    assert stored is not None
    prefix, kid, body = stored.split(":")
    assert prefix == "ENC"
    assert kid == box.primary_key_id
    assert len(kid) == 8
    assert stored_key_id(stored) == kid
    blob = base64.b64decode(body, validate=True)
    assert len(blob) == 12 + len("hunter2") + 16
    assert box.decrypt(stored) == "hunter2"


def test_the_reference_format_is_readable(box: SecretBox) -> None:
    """A value written by any AES-GCM implementation in this layout decrypts (interop)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = base64.b64decode(generate_key())
    nonce = bytes(range(12))
    stored = "ENC:" + base64.b64encode(nonce + AESGCM(key).encrypt(nonce, b"pw", None)).decode()
    assert SecretBox(key).decrypt(stored) == "pw"


def test_each_encryption_uses_a_fresh_nonce(box: SecretBox) -> None:
    assert box.encrypt("same") != box.encrypt("same")


@pytest.mark.parametrize("value", [None, ""])
def test_empty_values_pass_through(box: SecretBox, value: str | None) -> None:
    assert box.encrypt(value) == value
    assert SecretBox(None).encrypt(value) == value


def test_plain_values_read_as_they_are(box: SecretBox) -> None:
    assert box.decrypt("legacy-plaintext") == "legacy-plaintext"
    assert box.decrypt(None) is None


def test_unicode_round_trips(box: SecretBox) -> None:
    stored = box.encrypt("pässwörd-🔑")
    assert box.decrypt(stored) == "pässwörd-🔑"


def test_no_key_refuses_to_store_a_secret() -> None:
    with pytest.raises(NoEncryptionKey):
        SecretBox(None).encrypt("secret")


def test_no_key_cannot_read_a_secret(box: SecretBox) -> None:
    with pytest.raises(EncryptionError):
        SecretBox(None).decrypt(box.encrypt("secret"))


def test_wrong_key_is_an_error_not_the_ciphertext(box: SecretBox) -> None:
    stored = box.encrypt("Tr0ub4dor")
    with pytest.raises(EncryptionError) as caught:
        SecretBox(decode_key(generate_key())).decrypt(stored)
    assert "Tr0ub4dor" not in str(caught.value)
    assert stored not in str(caught.value)


@pytest.mark.parametrize(
    "stored",
    [
        "ENC:not base64!",
        "ENC:" + base64.b64encode(b"short").decode(),
        "ENC:",
        "ENC::",
        "ENC:0000000g:AAAA",
        "ENC:" + "A" * 10_000,
    ],
)
def test_corrupt_values_are_an_error(box: SecretBox, stored: str) -> None:
    with pytest.raises(EncryptionError):
        box.decrypt(stored)


def test_generate_key_is_base64_of_32_random_bytes() -> None:
    first, second = generate_key(), generate_key()
    assert len(base64.b64decode(first, validate=True)) == 32
    assert first != second


def test_generate_key_works_from_the_documented_one_liner() -> None:
    code = "from mail_proxy.encryption import generate_key; print(generate_key())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(decode_key(out.stdout.strip())) == 32


@pytest.mark.parametrize(
    "value",
    [
        "not base64 at all!",
        base64.b64encode(b"x" * 16).decode(),
        base64.b64encode(b"x" * 33).decode(),
    ],
    ids=["not-base64", "16-bytes", "33-bytes"],
)
def test_a_bad_env_key_is_a_config_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError):
        load_key(env={KEY_ENV: value}, key_file=tmp_path / "absent")


def test_env_key_wins_over_the_secrets_file(tmp_path: Path) -> None:
    env_key = generate_key()
    secrets_file = tmp_path / "encryption_key"
    secrets_file.write_bytes(b"f" * 32)
    assert load_key(env={KEY_ENV: env_key}, key_file=secrets_file) == base64.b64decode(env_key)


def test_secrets_file_holds_raw_bytes_with_whitespace_stripped(tmp_path: Path) -> None:
    secrets_file = tmp_path / "encryption_key"
    secrets_file.write_bytes(b"k" * 32 + b"\n")
    assert load_key(env={}, key_file=secrets_file) == b"k" * 32


def test_a_secrets_file_of_the_wrong_length_is_a_config_error(tmp_path: Path) -> None:
    secrets_file = tmp_path / "encryption_key"
    secrets_file.write_bytes(b"k" * 31)
    with pytest.raises(ConfigError):
        load_key(env={}, key_file=secrets_file)


def test_no_source_means_no_key(tmp_path: Path) -> None:
    assert load_key(env={}, key_file=tmp_path / "absent") is None


def test_the_embedded_fallback_key_is_created_once_and_kept(tmp_path: Path) -> None:
    fallback = tmp_path / "instance" / "encryption_key"
    first = load_key(env={}, key_file=tmp_path / "absent", fallback_file=fallback)
    second = load_key(env={}, key_file=tmp_path / "absent", fallback_file=fallback)
    assert first is not None
    assert len(first) == 32
    assert first == second
    assert fallback.stat().st_mode & 0o777 == 0o600


def test_the_env_key_wins_over_the_embedded_fallback(tmp_path: Path) -> None:
    env_key = generate_key()
    fallback = tmp_path / "encryption_key"
    got = load_key(env={KEY_ENV: env_key}, key_file=tmp_path / "absent", fallback_file=fallback)
    assert got == base64.b64decode(env_key)
    assert not fallback.exists()


# --- the keyring ------------------------------------------------------------------------------


def _key() -> bytes:
    return decode_key(generate_key())


def test_a_keyring_reads_values_of_every_key_and_writes_with_the_primary() -> None:
    old, new = _key(), _key()
    under_old = SecretBox(old).encrypt("pw")
    ring = SecretBox(new, previous=[old])
    assert ring.decrypt(under_old) == "pw"
    assert ring.key_ids == (key_id(new), key_id(old))
    assert stored_key_id(ring.encrypt("pw")) == key_id(new)
    assert ring.needs_reencrypt(under_old)
    assert not ring.needs_reencrypt(ring.encrypt("pw"))
    assert not ring.needs_reencrypt("plaintext")
    assert not ring.needs_reencrypt(None)


def test_reference_values_without_a_key_id_are_tried_with_every_key() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    old, new = _key(), _key()
    nonce = bytes(range(12))
    legacy = "ENC:" + base64.b64encode(nonce + AESGCM(old).encrypt(nonce, b"pw", None)).decode()
    ring = SecretBox(new, previous=[old])
    assert stored_key_id(legacy) is None
    assert ring.decrypt(legacy) == "pw"
    assert ring.needs_reencrypt(legacy)  # re-sealed to carry a key id
    with pytest.raises(EncryptionError, match="cannot be decrypted"):
        SecretBox(new).decrypt(legacy)


def test_a_value_under_a_key_the_ring_lacks_names_the_key_id_not_the_value() -> None:
    stranger = SecretBox(_key())
    stored = stranger.encrypt("Tr0ub4dor")
    assert stored is not None
    with pytest.raises(UnknownEncryptionKey) as caught:
        SecretBox(_key()).decrypt(stored)
    assert caught.value.key_id == stranger.primary_key_id
    assert stranger.primary_key_id in str(caught.value)
    assert "Tr0ub4dor" not in str(caught.value)


def test_a_forged_key_id_does_not_read_with_another_key() -> None:
    """Swapping the id in front of a value never makes another key accept it."""
    a, b = _key(), _key()
    stored = SecretBox(a).encrypt("pw")
    assert stored is not None
    forged = stored.replace(key_id(a), key_id(b), 1)
    with pytest.raises(EncryptionError):
        SecretBox(b, previous=[a]).decrypt(forged)


def test_a_ring_without_primary_reads_but_refuses_to_write() -> None:
    old = _key()
    ring = SecretBox(None, previous=[old])
    assert not ring.has_key
    assert ring.decrypt(SecretBox(old).encrypt("pw")) == "pw"
    with pytest.raises(NoEncryptionKey):
        ring.encrypt("pw")


def test_the_same_key_twice_is_one_key() -> None:
    key = _key()
    assert SecretBox(key, previous=[key]).key_ids == (key_id(key),)


def test_key_ids_are_stable_and_say_nothing_of_the_key() -> None:
    key = _key()
    assert key_id(key) == key_id(bytes(key))
    assert key.hex()[:8] != key_id(key)


def test_load_box_reads_previous_keys_separated_by_commas_or_whitespace(tmp_path: Path) -> None:
    primary, one, two = generate_key(), generate_key(), generate_key()
    env = {KEY_ENV: primary, PREVIOUS_KEYS_ENV: f" {one},\n{two} "}
    box = load_box(env=env, key_file=tmp_path / "absent")
    assert box.key_ids == tuple(key_id(decode_key(k)) for k in (primary, one, two))
    assert load_box(env={KEY_ENV: primary}, key_file=tmp_path / "absent").key_ids == (
        key_id(decode_key(primary)),
    )


def test_a_bad_previous_key_is_a_config_error_naming_its_place(tmp_path: Path) -> None:
    env = {KEY_ENV: generate_key(), PREVIOUS_KEYS_ENV: f"{generate_key()},short"}
    with pytest.raises(ConfigError, match=r"PREVIOUS_ENCRYPTION_KEYS \(key 2\)"):
        load_box(env=env, key_file=tmp_path / "absent")
