# SPDX-License-Identifier: Apache-2.0
"""The error statuses every operation can answer, documented in the served OpenAPI.

One table, keyed like `openapi_docs.OPERATIONS` by `"METHOD /path"`, lists the statuses each
operation can answer besides its success; `ERROR_MEANINGS` says what each status means and every
error answer has the body `ErrorBody` (`{"detail": str}`, FastAPI's list of validation problems
for 422, or add-messages' refused batch), as `errors.py` writes them. `apply_errors` adds them
to the document; `tests/unit/api/test_openapi_errors.py` fails for an operation missing from
the table, and the schemathesis fuzz test (`tests/integration/api/test_fuzz.py`) fails for any
answer whose status is not documented or whose body does not match.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class BatchRefused(BaseModel):
    """`POST /commands/add-messages` refusing a whole batch (the reference's 400 shape)."""

    error: str | None = Field(description="why the batch was refused, or null: see `rejected`")
    rejected: list[dict[str, Any]] = Field(description="`{id, reason}` per refused message")


class ErrorBody(BaseModel):
    """Every error answer: `detail` says what is wrong, as text or as validation problems."""

    detail: str | list[dict[str, Any]] | BatchRefused = Field(
        description="a sentence naming the problem, (422) one entry per invalid field, or "
        "(400 from add-messages) the refused batch"
    )


ERROR_MEANINGS: dict[int, str] = {
    400: "Invalid request: a value the service cannot use (unknown status, NUL in text, ...).",
    401: "Missing, invalid or expired API token, or a tenant token used on another tenant.",
    403: "Admin token required for this operation or field.",
    404: "The named tenant, account, message, webhook or setting does not exist.",
    409: "Conflicts with the current state (a key in use, a limit reached).",
    410: "The download link expired or the file is gone.",
    416: "The `Range` header asks for bytes outside the file (RFC 9110 §15.5.17).",
    413: "Request body larger than the configured limit (`GMP_MAX_BODY_BYTES`).",
    422: "The request does not match its schema; `detail` lists each invalid field.",
    502: "The upstream service (the provider's confirmation URL) answered with an error.",
    503: "Database or storage unavailable (or the feature unconfigured); retry after "
    "`Retry-After` seconds.",
}

# Statuses shared by kinds of operation (kept here so the table below stays readable).
_DB = (400, 422, 503)  # reads Postgres: NUL/bad params 400/422, outage 503
_TOKEN = (401, 403)  # X-API-Token checked; 403 on admin-only operations or fields
_BODY = (413,)  # takes a request body
_AUTHED = _DB + _TOKEN + (404,)  # the tenant named by a token or `tenant_id` may be gone
_WRITE = _AUTHED + _BODY + (409,)

OPERATION_ERRORS: dict[str, tuple[int, ...]] = {
    "GET /health": (),
    "GET /ready": (503,),
    "GET /status": _DB + _TOKEN,
    "GET /metrics": (401, 404),
    "POST /commands/add-messages": _WRITE,
    "POST /commands/delete-messages": _WRITE,
    "POST /commands/cleanup-messages": _WRITE,
    "POST /commands/suspend": _WRITE,
    "POST /commands/activate": _WRITE,
    "POST /commands/run-now": _WRITE,
    "GET /messages": _AUTHED,
    "GET /messages/{message_id}/events": _AUTHED,
    "POST /account": _WRITE,
    "GET /accounts": _AUTHED,
    "DELETE /account/{account_id}": _AUTHED,
    "POST /tenant": _WRITE,
    "GET /tenants": _AUTHED,
    "GET /tenants/sync-status": _AUTHED,
    "GET /tenant/{tenant_id}": _AUTHED,
    "PUT /tenant/{tenant_id}": _WRITE,
    "DELETE /tenant/{tenant_id}": _AUTHED,
    "POST /tenant/{tenant_id}/api-key": _WRITE,
    "DELETE /tenant/{tenant_id}/api-key": _AUTHED,
    "GET /instance": _AUTHED,
    "PUT /instance": _WRITE,
    "POST /instance/reload-bounce": _WRITE,
    "GET /command-log": _AUTHED,
    "GET /command-log/export": _AUTHED,
    "GET /suppressions": _AUTHED,
    "POST /suppressions": _WRITE,
    "DELETE /suppressions/{address}": _AUTHED,
    "POST /webhooks": _WRITE,
    "GET /webhooks": _AUTHED,
    "GET /webhooks/{webhook_id}": _AUTHED,
    "PATCH /webhooks/{webhook_id}": _WRITE,
    "DELETE /webhooks/{webhook_id}": _AUTHED,
    "POST /webhooks/{webhook_id}/rotate-secret": _WRITE,
    "POST /webhooks/{webhook_id}/retry-failed": _WRITE,
    # signed links, no token: a bad or expired link is 404/410, unconfigured or storage away 503
    "GET /download/{token}/{filename}": (400, 404, 410, 416, 422, 503),
    "HEAD /download/{token}/{filename}": (400, 404, 410, 416, 422, 503),
    "GET /providers": _AUTHED,
    "PUT /providers/{provider}": _WRITE,
    "DELETE /providers/{provider}": _AUTHED,
    # called by the provider: its own signature scheme (401), confirmation URL failures (502)
    "POST /providers/{provider}/{tenant_id}": (400, 401, 404, 413, 422, 502, 503),
}

_REF = "#/components/schemas/ErrorBody"


def _error_schemas() -> dict[str, Any]:
    schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"ErrorBody": schema, **defs}


def apply_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` with each operation's error statuses (from `OPERATION_ERRORS`) documented."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(_error_schemas())
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            codes = OPERATION_ERRORS.get(f"{method.upper()} {path}", ())
            responses = operation.setdefault("responses", {})
            for code in codes:
                entry = responses.setdefault(str(code), {})
                entry.setdefault("description", ERROR_MEANINGS[code])
                # FastAPI's own 422 entry (HTTPValidationError) is replaced: our 422 answers
                # also carry a sentence (`detail` as text), which it would not admit.
                entry["content"] = {"application/json": {"schema": {"$ref": _REF}}}
    return spec
