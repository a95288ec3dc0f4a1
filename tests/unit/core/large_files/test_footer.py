"""The download footer, worded as v0.6's, in the HTML body, the plain body or both parts."""

from __future__ import annotations

from mail_proxy.large_files.footer import OffloadedLink, html_footer, text_footer, with_footer
from mail_proxy.large_files.policy import MIB

LINK = OffloadedLink("big.zip", int(25.5 * MIB), "https://dl.example.org/download/t/big.zip")


def test_plain_footer_is_the_v06_text() -> None:
    assert text_footer([LINK]) == (
        "\n\n---\n"
        "Large attachments available for download:\n"
        "  - big.zip (25.5 MB): https://dl.example.org/download/t/big.zip\n"
        "(Links will expire after the configured retention period.)"
    )


def test_html_footer_is_the_v06_markup() -> None:
    assert html_footer([LINK]) == (
        '<hr style="margin-top: 20px;">'
        "<p><strong>Large attachments available for download:</strong></p>"
        '<ul><li><a href="https://dl.example.org/download/t/big.zip">big.zip</a> '
        "(25.5 MB)</li></ul>"
        "<p><em>Links will expire after the configured retention period.</em></p>"
    )


def test_names_cannot_inject_markup_or_lines() -> None:
    evil = OffloadedLink('<script>x</script>"\r\nBcc: a@b', 10, 'https://x/"><img>')
    html = html_footer([evil])
    assert "<script>" not in html
    assert '"><img>' not in html
    text = text_footer([evil])
    assert "\r" not in text
    assert "\nBcc" not in text


def test_plain_message_gets_the_text_footer() -> None:
    out = with_footer({"body": "Hello", "subject": "s"}, [LINK])
    assert out["body"] == "Hello" + text_footer([LINK])
    assert out["subject"] == "s"


def test_html_message_with_text_alternative_gets_both() -> None:
    payload = {"body": "<p>Hi</p>", "content_type": "html", "text_body": "Hi"}
    out = with_footer(payload, [LINK])
    assert out["body"] == "<p>Hi</p>" + html_footer([LINK])
    assert out["text_body"] == "Hi" + text_footer([LINK])
    assert payload["body"] == "<p>Hi</p>"  # the stored payload is left alone


def test_no_links_no_change() -> None:
    assert with_footer({"body": "x"}, []) == {"body": "x"}
