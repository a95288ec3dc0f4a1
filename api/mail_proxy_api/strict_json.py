# SPDX-License-Identifier: Apache-2.0
"""Request bodies parsed as strict JSON (orjson), for every route of the API.

The standard library's parser accepts `NaN` and `Infinity`, which Postgres' jsonb refuses:
such a body reached the database and failed there with a 500. orjson refuses them while
parsing, and its error is a `json.JSONDecodeError`, so FastAPI answers 422 `json_invalid` as for
any malformed body. It is also about twice as fast on the enqueue path.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """An APIRoute whose handler sees a request with the strict JSON parser."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict_handler
