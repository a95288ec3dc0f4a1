# SPDX-License-Identifier: Apache-2.0
"""The client's exceptions, one tree:

MailProxyError
├── TransportError          the service could not be reached (after the retries)
└── APIError                the service answered with an error status (`status_code`, `detail`)
    ├── AuthenticationError     401 / 403: missing, wrong or insufficient token
    ├── NotFoundError           404
    ├── ValidationError         422 (and 400/409/413: the request as sent is refused)
    └── ServiceUnavailable      429 / 503 still answered after every retry
"""

from __future__ import annotations

from typing import Any


class MailProxyError(Exception):
    """Base of every error this client raises."""


class TransportError(MailProxyError):
    """No answer from the service: connection refused, DNS, timeout (cause chained)."""


class APIError(MailProxyError):
    """The service answered `status_code` with `detail` (its JSON `detail`, or the body text)."""

    def __init__(self, status_code: int, detail: Any) -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"HTTP {status_code}: {detail}")


class AuthenticationError(APIError):
    pass


class NotFoundError(APIError):
    pass


class ValidationError(APIError):
    pass


class ServiceUnavailable(APIError):
    """Still 429 or 503 after the last retry (`retry_after_seconds` from `Retry-After`)."""

    def __init__(self, status_code: int, detail: Any, retry_after_seconds: float | None) -> None:
        super().__init__(status_code, detail)
        self.retry_after_seconds = retry_after_seconds


def error_for(status_code: int, detail: Any, retry_after_seconds: float | None) -> APIError:
    if status_code in (401, 403):
        return AuthenticationError(status_code, detail)
    if status_code == 404:
        return NotFoundError(status_code, detail)
    if status_code in (429, 503):
        return ServiceUnavailable(status_code, detail, retry_after_seconds)
    if status_code in (400, 409, 413, 422):
        return ValidationError(status_code, detail)
    return APIError(status_code, detail)
