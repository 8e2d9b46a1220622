"""Every error leaves the server as JSON `{"error", "detail"}` with the right status; never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from tilewright.errors import TilewrightError, one_line
from tilewright.jobs.view import Relative

log = logging.getLogger(__name__)

TITLES = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    408: "timeout",  # a body that stalled, or work cancelled or past its time limit
    409: "conflict",
    411: "length required",
    413: "too large",
    415: "unsupported media type",
    416: "range not satisfiable",
    422: "invalid request",
    500: "internal error",
    503: "unavailable",
}


class ErrorBody(BaseModel):
    """What every error answer carries (`error_response`): a title for the status, one line of detail, and
    sometimes more fields (a chain's `index`, `op`, `param`; an error's `type`)."""

    model_config = ConfigDict(extra="allow")
    error: str
    detail: str


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's error answers for its OpenAPI `responses`: each with the `ErrorBody` schema."""
    return {status: {"model": ErrorBody, "description": TITLES.get(status, "error")} for status in statuses}


class ApiError(Exception):
    """An HTTP error raised by a route, with its status and a one-line detail."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


def error_response(status: int, detail: str, headers: dict[str, str] | None = None, **extra: object) -> JSONResponse:
    return JSONResponse(
        {"error": TITLES.get(status, "error"), "detail": detail, **extra}, status_code=status, headers=headers
    )


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this request's path.

    The router's own 405 names the methods of the first route whose path matches, but a path
    can have several (a GET and its HEAD twin, a GET and a POST): RFC 9110 wants them all. The
    router is asked once per method, as it would route it (included routers and all); mounts
    match every method and answer their own 405 (StaticFiles names GET, HEAD), so they are left out.
    """
    routes = [route for route in request.app.router.routes if not isinstance(route, Mount)]
    return [
        method
        for method in METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]


def shown(request: Request, detail: str) -> str:
    """`detail` as a client may see it: the server's folders (uploads, outputs, work, input roots) left out,
    paths relative to them, as in job JSON (an error text can name the file it failed on)."""
    settings = getattr(request.app.state, "settings", None)
    return Relative(settings).text(detail) if settings is not None else detail


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, shown(request, exc.detail), exc.headers)

    @app.exception_handler(TilewrightError)
    async def _tilewright(request: Request, exc: TilewrightError) -> JSONResponse:
        return error_response(exc.http_status, shown(request, one_line(exc, None)), type=type(exc).__name__)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            methods = allowed_methods(request)
            if methods:  # else a mount's own answer
                headers["Allow"] = ", ".join(methods)
        return error_response(exc.status_code, str(exc.detail), headers or None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return error_response(422, problems or "invalid request")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")
