# SPDX-License-Identifier: Apache-2.0
"""Logging set-up: text for people, JSON lines (`GMP_LOG_FORMAT=json`) for collectors.

Both formats carry the same fields: time (`ts`, UTC), `level`, `logger`, `msg`, and every
structured field passed in `extra=` (stable keys such as `message_id`, `tenant_id`,
`account_id`, `action`, `url`, `reason`). Text renders the fields after the message as
`key=value` (logfmt: values with spaces or quotes are quoted); JSON is one object per line, from
python-json-logger.

Every URL in a message or a field is redacted on the way out (user info and query values
masked, `mail_proxy.redact.redact_text`), whatever logger produced it (httpx, uvicorn, ours):
the filter sits on the handler, not on each logger. Callers still never pass a secret.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from mail_proxy.redact import redact_text, redact_urls

# Attributes every LogRecord has: anything else on a record came in through `extra=`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _timestamp(record: logging.LogRecord) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{when}.{int(record.msecs):03d}Z"


def structured_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of `record`, in the order they were given."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class RedactUrls(logging.Filter):
    """Masks URL credentials in the message, its arguments and every structured field."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a caller's broken %-format: keep the raw text
            message = str(record.msg)
        record.msg, record.args = redact_text(message), None
        for key, value in structured_fields(record).items():
            if isinstance(value, str | dict | list):
                setattr(record, key, redact_urls(value))
            elif isinstance(value, BaseException):
                setattr(record, key, redact_text(repr(value)))
        return True


def _logfmt(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value) if value is None else str(value)
    if text == "" or any(c in text for c in ' ="\\\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: msg key=value ...` with the same fields as the JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = structured_fields(record)
        if fields:
            line += " " + " ".join(f"{k}={_logfmt(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + redact_text(self.formatException(record.exc_info))
        return line


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: ts, level, logger, msg, then the structured fields."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={
                "levelname": "level",
                "name": "logger",
                "message": "msg",
                "exc_info": "exc",
            },
            json_default=str,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["ts"] = _timestamp(record)
        super().add_fields(log_data, record, message_dict)
        log_data["level"] = record.levelname.lower()

    def formatException(self, ei: Any) -> str | list[str]:  # type: ignore[override]
        text = super().formatException(ei)
        return redact_text(text) if isinstance(text, str) else [redact_text(t) for t in text]


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send every logger's records to stderr in `fmt` ("text" or "json"), URLs redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactUrls())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pgserver narrates every pg_ctl call at INFO; only its problems matter here.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
