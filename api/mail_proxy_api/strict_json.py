# SPDX-License-Identifier: Apache-2.0
"""Request bodies parsed as strict JSON (orjson), for every route of the API.

The standard library's parser accepts `NaN` and `Infinity`, which Postgres' jsonb refuses:
such a body reached the database and failed there with a 500. orjson refuses them while
parsing, and its error is a `json.JSONDecodeError`, so FastAPI answers 422 `json_invalid` as for
any malformed body. It is also about twice as fast on the enqueue path.

What Postgres cannot store is refused the same way, for every route at once, before any schema
sees it (issue 9): a NUL character in any string or key (text and jsonb refuse `\u0000`). A NUL
in the query string or path is a 422 too. Numbers are bounded where a column holds them, on the
schema fields (`schemas/bounds.py`); free-form JSON (headers, metadata) keeps any number, as
jsonb does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

NUL = "\x00"


def storable_problem(value: Any, path: str = "$") -> str | None:
    """Why a parsed JSON value cannot be stored in Postgres (a NUL character), or None."""
    if isinstance(value, str):
        return f"NUL character (\\u0000) in text at {path}" if NUL in value else None
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
            body = await self.body()
            parsed = orjson.loads(body)
            # JSON can carry a NUL only as the escape `\u0000`: most bodies skip the walk.
            problem = storable_problem(parsed) if b"\\u0000" in body else None
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
