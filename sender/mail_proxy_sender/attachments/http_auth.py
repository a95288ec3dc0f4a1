# SPDX-License-Identifier: Apache-2.0
"""Credentials for the calls a sender makes to tenant applications, and where they may go.

`client_auth` is `{"method": "none"|"bearer"|"basic", "token"?, "user"?, "password"?}` (reference
section 5.2). A tenant's credentials are only ever sent to the origin of its own base URL.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import httpx


def auth_headers(auth: Mapping[str, Any] | None) -> dict[str, str]:
    """The `Authorization` header for a `client_auth` object (none when it has no secret)."""
    if not auth:
        return {}
    method = str(auth.get("method") or "none").lower()
    if method == "bearer" and auth.get("token"):
        return {"Authorization": f"Bearer {auth['token']}"}
    if method == "basic" and auth.get("user") is not None:
        pair = f"{auth.get('user')}:{auth.get('password') or ''}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    return {}


def same_origin(url: str, base_url: str | None) -> bool:
    """True when `url` has the scheme, host and port of `base_url`."""
    if not base_url:
        return False
    try:
        a, b = httpx.URL(url), httpx.URL(base_url)
    except httpx.InvalidURL:
        return False
    default = {"http": 80, "https": 443}
    return (
        a.scheme == b.scheme
        and a.host.lower() == b.host.lower()
        and (a.port or default.get(a.scheme)) == (b.port or default.get(b.scheme))
    )


def join_url(base_url: str, path: str | None, default_path: str) -> str:
    """`base_url` + path, as the reference composes it (plain concatenation)."""
    return base_url.rstrip("/") + (path or default_path)
