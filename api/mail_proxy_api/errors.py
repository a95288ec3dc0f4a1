"""Mapping the core error tree to HTTP answers: always JSON `{"detail": ...}`, never a bare 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mail_proxy.errors import (
    Conflict,
    EncryptionError,
    InvalidRequest,
    MailProxyError,
    NotFound,
)

log = logging.getLogger(__name__)


def _status_for(exc: MailProxyError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, InvalidRequest):
        return 400
    if isinstance(exc, EncryptionError):
        return 500
    return 400


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MailProxyError)
    status = _status_for(exc)
    if status >= 500:
        log.error("request failed", extra={"action": "request_error", "path": request.url.path})
    return JSONResponse({"detail": str(exc)}, status_code=status)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", extra={"action": "request_error", "path": request.url.path})
    return JSONResponse({"detail": "internal error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MailProxyError, _service_error)
    app.add_exception_handler(Exception, _unexpected)
