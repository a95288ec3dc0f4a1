"""Text and JSON logs carry the same structured fields, and no URL credential in any of them."""

import json
import logging
import re
from collections.abc import Iterator

import pytest

from mail_proxy.logs import configure_logging

SECRET_URL = "https://app:s3cret@app.example/sync?signature=abc123&x=1"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _emit(fmt: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    configure_logging("INFO", fmt)
    log = logging.getLogger("mail_proxy_sender.reports.reporter")
    log.warning(
        "delivery report failed",
        extra={
            "action": "sync_failed",
            "tenant_id": "acme",
            "url": SECRET_URL,
            "error": "HTTP 503: server busy",
            "failures": 3,
        },
    )
    logging.getLogger("httpx").info("HTTP Request: %s %s", "POST", SECRET_URL)
    try:
        raise ConnectionError(f"cannot reach {SECRET_URL}")
    except ConnectionError:
        log.exception("report crashed", extra={"tenant_id": "acme"})
    return capsys.readouterr().err.splitlines()


def test_text_and_json_carry_the_same_fields(capsys: pytest.CaptureFixture[str]) -> None:
    text = _emit("text", capsys)
    lines = [json.loads(line) for line in _emit("json", capsys)]

    first = lines[0]
    assert first["level"] == "warning"
    assert first["logger"] == "mail_proxy_sender.reports.reporter"
    assert first["msg"] == "delivery report failed"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    fields = {"action": "sync_failed", "tenant_id": "acme", "error": "HTTP 503: server busy"}
    assert fields.items() <= first.items()
    assert first["failures"] == 3

    assert text[0].startswith(first["ts"][:10])
    assert " WARNING mail_proxy_sender.reports.reporter: delivery report failed " in text[0]
    for key, value in fields.items():
        shown = f'"{value}"' if " " in value else value
        assert f"{key}={shown}" in text[0]
    assert "failures=3" in text[0]
    assert f"url={first['url']}" in text[0] or f'url="{first["url"]}"' in text[0]


def test_no_url_credential_survives_in_either_format(capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in ("text", "json"):
        out = "\n".join(_emit(fmt, capsys))
        assert "s3cret" not in out
        assert "abc123" not in out
        assert "app.example/sync" in out  # the place stays readable
    [_, httpx_line, crash] = [json.loads(line) for line in _emit("json", capsys)][:3]
    assert (
        httpx_line["msg"]
        == "HTTP Request: POST https://********@app.example/sync?signature=********&x=********"
    )
    assert "ConnectionError" in crash["exc"]


def test_a_broken_format_string_is_logged_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("x").warning("50%% done %s %s", "one")  # one argument missing
    [line] = capsys.readouterr().err.splitlines()
    assert json.loads(line)["msg"].startswith("50%")
