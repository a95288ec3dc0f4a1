# SPDX-License-Identifier: Apache-2.0
"""Mapping the core error tree to HTTP answers: always JSON `{"detail": ...}`, never a bare 500."""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from mail_proxy.db.pool import DATABASE_ERRORS, database_unavailable
from mail_proxy.errors import (
    Conflict,
    EncryptionError,
    InvalidRequest,
    MailProxyError,
    NotFound,
)
from mail_proxy.redact import MASK, is_secret_key, redact

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


# Seconds a client should wait before retrying while the database is away (RFC 9110 §10.2.3).
RETRY_AFTER_SECONDS = 5


def _unavailable_response() -> JSONResponse:
    return JSONResponse(
        {"detail": "database unavailable, retry later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if database_unavailable(exc):
        log.warning(
            "database unavailable",
            extra={"action": "db_unavailable", "path": request.url.path, "error": repr(exc)},
        )
        return _unavailable_response()
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", extra={"action": "request_error", "path": request.url.path})
    return JSONResponse({"detail": "internal error"}, status_code=500)


async def _invalid_body(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 echoes the offending input; a secret in it is masked like everywhere else."""
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors())
    for error in errors:
        if "input" not in error:
            continue
        loc = error.get("loc") or ()
        if loc and is_secret_key(loc[-1]) and error["input"] not in (None, ""):
            error["input"] = MASK
        else:
            error["input"] = redact(error["input"])
    return JSONResponse({"detail": errors}, status_code=422)


async def _unstorable_text(request: Request, exc: Exception) -> JSONResponse:
    """Postgres text cannot hold NUL (or bytes invalid in UTF-8): whatever the route and
    wherever the value came from (path, query, body), that is the caller's input -> 400."""
    return JSONResponse(
        {"detail": "text values may not contain NUL (\\u0000) or invalid characters"},
        status_code=400,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MailProxyError, _service_error)
    app.add_exception_handler(asyncpg.CharacterNotInRepertoireError, _unstorable_text)
    app.add_exception_handler(asyncpg.UntranslatableCharacterError, _unstorable_text)
    app.add_exception_handler(RequestValidationError, _invalid_body)
    for kind in DATABASE_ERRORS:
        if issubclass(kind, Exception):
            app.add_exception_handler(kind, _database_error)
    app.add_exception_handler(Exception, _unexpected)
