# SPDX-License-Identifier: Apache-2.0
"""The CLI's client of the REST API: one base URL, one `X-API-Token`, errors as one line.

The admin verbs only ever talk HTTP, so they work the same against a local instance, a remote
one (`--url`/`GMP_URL`) or one inside a cluster. Any failure becomes an `ApiError` whose message
is what the user sees, e.g. `error: HTTP 404: Tenant 'x' not found`.
"""

from __future__ import annotations

from typing import IO, Any

import click
import httpx

TOKEN_HEADER = "X-API-Token"


class CliError(click.ClickException):
    """A failure shown as one `error: ...` line on stderr, exit status 1, never a traceback."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class ApiError(CliError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


def _describe(detail: Any) -> str:
    """The API's `detail` as one line: a string, pydantic's error list, or enqueue rejections."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    if isinstance(detail, dict) and "rejected" in detail:
        rejected = detail["rejected"] or []
        return "rejected " + "; ".join(f"{r.get('id')}: {r.get('reason')}" for r in rejected)
    return str(detail)


def error_from(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        detail = _describe(body["detail"])
    elif isinstance(body, dict) and "error" in body:
        detail = str(body["error"])
    else:
        detail = response.reason_phrase or response.text.strip()[:200]
    return ApiError(response.status_code, detail)


class ApiClient:
    """A synchronous client; `call` returns the decoded JSON body or raises `ApiError`."""

    def __init__(self, base_url: str, token: str | None, *, timeout_seconds: float = 30.0):
        self.base_url = base_url.rstrip("/")
        headers = {TOKEN_HEADER: token} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_seconds)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, path, params=clean or None, json=json)
        except httpx.TimeoutException as exc:
            raise CliError(
                f"{self.base_url} did not answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {self.base_url}: {exc}") from exc
        if response.is_error:
            raise error_from(response)
        try:
            return response.json()
        except ValueError as exc:
            raise CliError(f"{self.base_url}{path} did not answer with JSON") from exc

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.call("POST", path, params=params, json=body)

    def put(self, path: str, body: Any) -> Any:
        return self.call("PUT", path, json=body)

    def delete(self, path: str, **params: Any) -> Any:
        return self.call("DELETE", path, params=params)
