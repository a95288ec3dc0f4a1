"""Every operation of the API reference has a summary, a description and examples that its own
schemas accept. A new route without them fails here: give it an entry in
`mail_proxy_api/openapi_docs.py` (or its own summary=, docstring and examples)."""

from typing import Any

import pytest
from fastapi import FastAPI, routing
from fastapi.routing import APIRoute
from pydantic import TypeAdapter

from mail_proxy.config import Settings
from mail_proxy.encryption import SecretBox
from mail_proxy.metrics import Metrics
from mail_proxy_api.app import create_app
from mail_proxy_api.context import ApiContext
from mail_proxy_api.openapi_docs import OPERATIONS, operation_key


@pytest.fixture(scope="module")
def app() -> FastAPI:
    ctx = ApiContext(settings=Settings(), pool=None, box=SecretBox(None), metrics=Metrics())  # type: ignore[arg-type]
    return create_app(ctx)


def _routes(app: FastAPI) -> list[Any]:
    """The API routes behind the document (FastAPI >= 0.16x includes routers lazily)."""
    iterate = getattr(routing, "iter_route_contexts", None)
    if iterate is None:
        return [r for r in app.routes if isinstance(r, APIRoute)]
    return [c.route for c in iterate(app.routes) if isinstance(c.original_route, APIRoute)]


def _operations(app: FastAPI) -> list[tuple[str, Any, dict[str, Any]]]:
    """(key, route, OpenAPI operation) for every operation of the served document."""
    spec = app.openapi()
    by_key = {
        operation_key(method, route.path_format): route
        for route in _routes(app)
        for method in route.methods
    }
    found = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            key = operation_key(method, path)
            found.append((key, by_key[key], op))
    assert len(found) >= 27
    return found


def test_every_operation_has_a_summary_and_a_description(app: FastAPI) -> None:
    missing = []
    for key, route, op in _operations(app):
        # FastAPI invents "Add Messages" from the function name: only a chosen summary counts.
        invented = route.name.replace("_", " ").title()
        if not op.get("summary") or op["summary"] == invented:
            missing.append(f"{key}: summary")
        if len(op.get("description") or "") < 30:
            missing.append(f"{key}: description")
    assert missing == [], "document these in mail_proxy_api/openapi_docs.py"


def test_every_operation_has_examples_its_schemas_accept(app: FastAPI) -> None:
    problems = []
    for key, route, op in _operations(app):
        ok = op["responses"].get("200") or {}
        examples = [c.get("example") for c in (ok.get("content") or {}).values()]
        if not any(e is not None for e in examples):
            problems.append(f"{key}: no 200 example")
        elif route.response_model is not None:
            try:
                TypeAdapter(route.response_model).validate_python(examples[0])
            except ValueError as exc:
                problems.append(f"{key}: 200 example refused: {exc}")
        if "requestBody" in op:
            content = op["requestBody"]["content"]["application/json"]
            if content.get("example") is None and not content.get("examples"):
                problems.append(f"{key}: no request example")
                continue
            [body] = route.dependant.body_params
            try:
                TypeAdapter(body.field_info.annotation).validate_python(content["example"])
            except ValueError as exc:
                problems.append(f"{key}: request example refused: {exc}")
    assert problems == []


def test_the_reference_names_no_route_that_does_not_exist(app: FastAPI) -> None:
    keys = {key for key, _, _ in _operations(app)}
    assert set(OPERATIONS) - keys == set()


def test_the_served_document_carries_the_reference(app: FastAPI) -> None:
    served = app.openapi()
    op = served["paths"]["/commands/add-messages"]["post"]
    assert op["summary"] == OPERATIONS["POST /commands/add-messages"].summary
    assert op["requestBody"]["content"]["application/json"]["example"]["messages"]


def test_the_openapi_lists_every_operation_once(app: FastAPI) -> None:
    ids = [op["operationId"] for _, _, op in _operations(app)]
    assert len(ids) == len(set(ids))
