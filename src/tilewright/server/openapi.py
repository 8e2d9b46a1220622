"""The OpenAPI schema tells the truth: every error a route answers is declared, with the body it really has.

Every tilewright error is `{"error", "detail", ...}` (`server.errors`), FastAPI's default 422 model
(`{"detail": [{"loc", "msg", "type"}]}`) is not what the server sends, and most error statuses come
from parts every route shares, not from the route's own code. So the schema is finished here, once,
from what each route is made of:

- any parameter or body: 400 (a value checked by hand) and 422 (a value the model refused);
- a path parameter: 404 (no such image, job, level or tile);
- a request body (its own or one read by hand, declared with `body`): 413 and 408 (`server.limits`);
- the write token (`require_token`, as a dependency or called by the route): 401;
- every route but the liveness probe: 503 (the database, broker or storage is down);
- whatever the route declares itself in `responses=errors.responses(...)` (409, 415, 416 ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from tilewright.server.errors import TITLES, ErrorBody

REF = "#/components/schemas/ErrorBody"
#: the routes that answer 503 as any other: all but the liveness probe, which must answer while parts are down
NEVER_UNAVAILABLE = frozenset({"/healthz"})


def body(*media_types: str, required: bool = True) -> dict[str, Any]:
    """`openapi_extra=` for a route that reads its body by hand (streamed to disk, or parsed by its source):
    the schema says it takes one, of these media types."""
    content = {media: {"schema": {"type": "string", "format": "binary"}} for media in media_types}
    return {"requestBody": {"required": required, "content": content}}


def _error(status: int) -> dict[str, Any]:
    return {"description": TITLES.get(status, "error"), "content": {"application/json": {"schema": {"$ref": REF}}}}


def _uses(route: APIRoute, check: Callable[..., Any]) -> bool:
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if dependency.call is check:
            return True
        pending.extend(dependency.dependencies)
    return bool(getattr(route, "checks_token", False))


def _statuses(path: str, route: APIRoute, operation: dict[str, Any], token_check: Callable[..., Any]) -> Iterable[int]:
    has_body = "requestBody" in operation
    if operation.get("parameters") or has_body:
        yield from (400, 422)
    if "{" in path:
        yield 404
    if has_body:
        yield from (408, 413)
    if _uses(route, token_check):
        yield 401
    if path not in NEVER_UNAVAILABLE:
        yield 503


def install(app: FastAPI, token_check: Callable[..., Any]) -> None:
    """Finish `app`'s schema when it is first asked for (after every route is included)."""

    def schema() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = document.setdefault("components", {}).setdefault("schemas", {})
        components["ErrorBody"] = ErrorBody.model_json_schema()
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        for context in iter_route_contexts(app.routes):  # included routers' routes with their full paths
            route, path = context.original_route, context.path_format
            if not isinstance(route, APIRoute) or not route.include_in_schema or path is None:
                continue
            for method in context.methods or ():
                operation = document["paths"].get(path, {}).get(method.lower())
                if operation is None:
                    continue
                responses = operation.setdefault("responses", {})
                for status in _statuses(path, route, operation, token_check):
                    responses.setdefault(str(status), _error(status))  # a route's own words win
                for status, answer in responses.items():  # a route's own error answers: the one error body
                    if status.startswith(("4", "5")) and "content" not in answer:
                        answer["content"] = _error(int(status))["content"]
        app.openapi_schema = document
        return document

    app.openapi = schema  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
