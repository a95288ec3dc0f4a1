# SPDX-License-Identifier: Apache-2.0
"""Request bodies parsed as strict JSON (orjson), for every route of the API.

The standard library's parser accepts `NaN` and `Infinity`, which Postgres' jsonb refuses:
such a body reached the database and failed there with a 500. orjson refuses them while
parsing, and its error is a `json.JSONDecodeError`, so FastAPI answers 422 `json_invalid` as for
any malformed body. It is also about twice as fast on the enqueue path.

What Postgres cannot store is refused the same way, for every route at once, before any schema
sees it (issue 9): a NUL character in any string or key (text and jsonb refuse `\u0000`), and
numbers beyond the 64-bit integer range (orjson reads them as floats, which pydantic would
turn back into an int no column can hold). A NUL in the query string or path is a 422 too.
Narrower bounds (int32 columns, lengths) are declared on the schema fields themselves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NUL = "\x00"


def storable_problem(value: Any, path: str = "$") -> str | None:
    """Why a parsed JSON value cannot be stored in Postgres (NUL, huge number), or None."""
    if isinstance(value, str):
        return f"NUL character (\\u0000) in text at {path}" if NUL in value else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        if not INT64_MIN <= value <= INT64_MAX:
            return f"number out of the 64-bit range at {path}"
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            problem = storable_problem(item, f"{path}[{index}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                return f"NUL character (\\u0000) in a key at {path}"
            problem = storable_problem(item, f"{path}.{key[:50]}")
            if problem:
                return problem
    return None


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            parsed = orjson.loads(await self.body())
            problem = storable_problem(parsed)
            if problem:
                # FastAPI turns a JSONDecodeError into its 422 `json_invalid` answer.
                raise json.JSONDecodeError(problem, "", 0)
            self._json = parsed
        return self._json


def _nul_in_url(request: Request) -> bool:
    return NUL in request.url.path or any(
        NUL in key or NUL in value for key, value in request.query_params.multi_items()
    )


class StrictJsonRoute(APIRoute):
    """An APIRoute whose handler sees a request with the strict JSON parser."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            if _nul_in_url(request):
                return JSONResponse(
                    {"detail": "NUL character (\\u0000) in the URL path or query"},
                    status_code=422,
                )
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict_handler
