"""Signed download links: any change to id, name or expiry is refused; expiry is 410."""

from __future__ import annotations

import pytest

from mail_proxy.large_files.links import (
    LinkExpired,
    LinkInvalid,
    LinkSigner,
    download_url,
)

SECRET = b"s" * 32
FILE_ID = "0123456789abcdef0123456789abcdef"


def test_a_signed_link_verifies_until_it_expires() -> None:
    signer = LinkSigner(SECRET)
    token = signer.token(FILE_ID, "report.pdf", 2_000)
    assert signer.verify(token, "report.pdf", now=1_999).file_id == FILE_ID
    with pytest.raises(LinkExpired):
        signer.verify(token, "report.pdf", now=2_000)


@pytest.mark.parametrize(
    ("change", "name"),
    [
        (lambda t: t.replace("0123", "f123", 1), "report.pdf"),  # another file id
        (lambda t: t.replace("-2000-", "-9999-"), "report.pdf"),  # a longer expiry
        (lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"), "report.pdf"),  # signature
        (lambda t: t, "other.pdf"),  # another name
        (lambda t: t + "x", "report.pdf"),
        (lambda t: "../" + t, "report.pdf"),
        (lambda t: "", "report.pdf"),
    ],
)
def test_tampered_links_are_invalid(change, name: str) -> None:  # type: ignore[no-untyped-def]
    signer = LinkSigner(SECRET)
    token = signer.token(FILE_ID, "report.pdf", 2_000)
    with pytest.raises(LinkInvalid):
        signer.verify(change(token), name, now=1_000)


def test_a_tampered_expired_link_is_invalid_not_expired() -> None:
    """An attacker learns nothing about which ids exist from 404 versus 410."""
    token = LinkSigner(SECRET).token(FILE_ID, "a.bin", 1_000).replace("-1000-", "-1001-")
    with pytest.raises(LinkInvalid):
        LinkSigner(SECRET).verify(token, "a.bin", now=5_000)


def test_another_secret_does_not_verify() -> None:
    token = LinkSigner(SECRET).token(FILE_ID, "a.bin", 2_000)
    with pytest.raises(LinkInvalid):
        LinkSigner(b"t" * 32).verify(token, "a.bin", now=1_000)


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        LinkSigner(b"short")


def test_download_url_quotes_the_name() -> None:
    url = download_url("https://mail.example.org/", "tok", "résumé 1?.pdf")
    assert url == "https://mail.example.org/download/tok/r%C3%A9sum%C3%A9%201%3F.pdf"
