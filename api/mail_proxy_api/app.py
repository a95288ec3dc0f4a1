# SPDX-License-Identifier: Apache-2.0
"""The FastAPI application factory; `main()` builds the context and passes it in."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from mail_proxy import __version__
from mail_proxy_api.body_limit import BodySizeLimit
from mail_proxy_api.context import ApiContext
from mail_proxy_api.errors import install_error_handlers
from mail_proxy_api.openapi_docs import document_operations
from mail_proxy_api.routes import (
    accounts,
    commands,
    downloads,
    health,
    instance,
    messages,
    providers,
    suppressions,
    tenants,
    webhooks,
)


def create_app(ctx: ApiContext) -> FastAPI:
    # Swagger UI and ReDoc assets come from the fastapi-offline wheel, not a CDN: /docs works
    # offline and behind firewalls.
    app = FastAPIOffline(title="Async Mail Service", version=__version__)
    app.state.ctx = ctx
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=ctx.settings.max_request_bytes)
    for module in (
        health,
        commands,
        messages,
        accounts,
        tenants,
        instance,
        suppressions,
        webhooks,
        downloads,
        providers,
    ):
        app.include_router(module.router)
    document_operations(app)
    return app
