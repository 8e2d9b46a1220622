"""`/resize` (one image in the body, the resized image back) and `/process` (an operation chain over
several stored images, inline when small, as a `process` job when large). Issue 4.

All libvips work runs in the thread pool, so requests proceed in parallel; bad input is
always a 4xx JSON error (`{"error", "detail"}`), never a 500.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pyvips
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic_core import ErrorDetails
from sqlalchemy.orm import Session

from tilewright.config import Settings
from tilewright.db import session_scope
from tilewright.errors import InputError, TilewrightError, one_line, vips_reason
from tilewright.jobs.kinds.process import ImageItem, Params, process_images, process_target
from tilewright.jobs.models import Image
from tilewright.jobs.params import explain
from tilewright.jobs.service import submit_job
from tilewright.jobs.view import public_job
from tilewright.ops import Encoded, OperationError, Source, Step, encode, parse_chain, run_chain
from tilewright.paths import allowed_input
from tilewright.server import openapi
from tilewright.server.deps import executor_of, require_token, settings_of
from tilewright.server.errors import ApiError, error_response, responses
from tilewright.server.proxy import link
from tilewright.server.upload import discard, safe_filename, stream_body

router = APIRouter(tags=["operations"])

MAX_SIDE = 16384
RESIZE_FORMATS = ("jpeg", "png", "webp", "avif")
_ID = re.compile(r"^[0-9a-f]{32}$")


def _int_param(request: Request, name: str, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, not {raw[:50]!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}, not {value}")
    return value


def _operation_error(exc: OperationError) -> JSONResponse:
    status = getattr(exc, "http_status", 422)
    status = 422 if status == 400 else status
    return error_response(status, one_line(exc, limit=None), index=exc.index, op=exc.op, param=exc.param)


# -- /resize ---------------------------------------------------------------------------------------


def _query(name: str, low: int, high: int, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "integer", "minimum": low, "maximum": high},
    }


@router.post(
    "/resize",
    dependencies=[Depends(require_token)],
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}, "image/avif": {}}},
        **responses(400, 413, 415),
    },
    # the query is read by hand (its 400s name the parameter as this route always did): the schema says it
    openapi_extra={
        **openapi.body("image/*", "application/octet-stream"),
        "parameters": [
            _query("width", 1, MAX_SIDE, "fit inside this width (give width and/or height)"),
            _query("height", 1, MAX_SIDE, "fit inside this height"),
            _query("quality", 1, 100, "encoder quality"),
            {
                "name": "format",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": list(RESIZE_FORMATS)},
                "description": "output format (default: the input's when it is one of these, else jpeg)",
            },
        ],
    },
)
async def resize(request: Request) -> Response:
    """Resize the image in the body to fit inside `width` x `height` (aspect kept; one side may be omitted).

    Query: `width`, `height` (1..16384), `quality` (1..100), `format` (jpeg, png, webp, avif; default: the
    input's when it is one of those, else jpeg). Answers the image with `X-Original-Size` and `X-Resized-Size`
    (the body's and the answer's byte counts, as the Azure Functions resize sent them: `/api/resize`) and
    `X-Original-Dimensions` and `X-Resized-Dimensions` (`WIDTHxHEIGHT`).
    """
    settings = settings_of(request)
    width = _int_param(request, "width", 1, MAX_SIDE)
    height = _int_param(request, "height", 1, MAX_SIDE)
    quality = _int_param(request, "quality", 1, 100)
    if width is None and height is None:
        raise ApiError(400, "give width and/or height (1..16384)")
    asked = (request.query_params.get("format") or "").strip().lower()
    fmt = ("jpeg" if asked == "jpg" else asked) or None
    if fmt is not None and fmt not in RESIZE_FORMATS:
        raise ApiError(400, f"format must be one of {', '.join(RESIZE_FORMATS)}, not {fmt[:20]!r}")
    chain: list[Any] = [
        {"op": "resize", **({"width": width} if width else {}), **({"height": height} if height else {})}
    ]
    if fmt:
        chain.append({"op": "format", "format": fmt})
    if quality:
        chain.append({"op": "quality", "quality": quality})
    try:
        steps = parse_chain(chain)
    except OperationError as exc:  # e.g. avif when this libvips cannot write it
        raise ApiError(400, exc.reason) from None

    body = await stream_body(
        request,
        settings.work_root() / "resize",
        settings.max_upload_bytes,
        empty="empty body: send the image as the request body",
    )
    try:
        encoded, original = await run_in_threadpool(resize_file, body.path, steps, settings)
    finally:
        discard(body.path)
    stem = (
        Path(safe_filename(request.headers.get("x-filename"))).stem if request.headers.get("x-filename") else "resized"
    )
    filename = f"{stem or 'resized'}{encoded.extension}"
    return Response(
        encoded.data,
        media_type=encoded.media_type,
        headers={
            "Content-Disposition": f'inline; filename="{filename}"',
            **size_headers(body.size, original, encoded),
        },
    )


def size_headers(received: int, original: tuple[int, int], encoded: Encoded) -> dict[str, str]:
    """The size headers of `/resize` and `/api/resize`: bytes under the Azure Functions resize's names (its
    clients read them as byte counts), pixels under their own."""
    return {
        "X-Original-Size": str(received),
        "X-Resized-Size": str(len(encoded.data)),
        "X-Original-Dimensions": f"{original[0]}x{original[1]}",
        "X-Resized-Dimensions": f"{encoded.width}x{encoded.height}",
    }


def resize_file(path: Path, steps: list[Step], settings: Settings) -> tuple[Encoded, tuple[int, int]]:
    """The file's first chain result, encoded (as the input's format when the chain names none), and the
    input's size; ApiError 400 for an operation it refuses, 415 for what libvips cannot decode, 413 over a limit."""
    try:
        with Source(path, settings) as source:
            original = (source.width, source.height)
            header = source.header()
            loader = header.get("vips-loader") if header is not None and "vips-loader" in header.get_fields() else ""
            default = next((f for f in ("png", "webp") if loader.startswith(f)), "jpeg")
            return encode(run_chain(source, steps, settings)[0], default), original
    except OperationError as exc:
        if getattr(exc, "http_status", 400) == 413:
            raise
        raise ApiError(400, exc.reason) from None
    except pyvips.Error as exc:
        raise ApiError(415, f"cannot decode the image: {vips_reason(exc)}") from None  # the one explainer


# -- /process --------------------------------------------------------------------------------------


class ProcessRequest(Params):
    """The body of `POST /process`: the `process` job kind's parameters (a large request becomes that job)."""


class _ProcessRoute(APIRoute):
    """`/process` answers a bad body 400 (FastAPI's own validation would say 422) and a bad operation 422
    with its `index`, `op` and `param`, whether the body's validation or the inline run finds it."""

    checks_token = True  # by hand, before the body is parsed (server.openapi declares its 401)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            # the body is JSON whatever its content type says (`curl -d` sends form-encoded), as it always was;
            # set before anything reads the headers (Request caches them)
            request.scope["headers"] = [
                *(item for item in request.scope["headers"] if item[0] != b"content-type"),
                (b"content-type", b"application/json"),
            ]
            require_token(request)  # before the body is parsed: without the token it is a 401, whatever it sent
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise ApiError(400, _body_problem(exc)) from None
            except OperationError as exc:  # raised as it is by the model's chain check (not a ValueError)
                return _operation_error(exc)

        return checked


def _body_problem(exc: RequestValidationError) -> str:
    """One line for a body the model refused; its fields are explained as a `process` job's parameters are."""
    errors = list(exc.errors())
    if any(e["type"] == "json_invalid" for e in errors):
        return 'the body must be JSON: {"images": [...], "operations": [...]}'
    fields: list[ErrorDetails] = [
        cast(ErrorDetails, {**e, "loc": tuple(e["loc"][1:])}) for e in errors if len(e["loc"]) > 1
    ]
    if not fields:  # no body, or not an object
        return "the body must be a JSON object with 'images' and 'operations'"
    return explain(ProcessRequest, "process", fields)


async def process(body: ProcessRequest, request: Request) -> Response | list[dict[str, Any]]:
    """Apply `operations` (left to right) to each of `images` and write `output` under OUTPUT_ROOT/processed/.

    Body: `{"images": [{"input": IMAGE_ID or PATH, "output": "NAME.png"}], "operations": ["split", "resize=0.5"],
    "format": "webp"}`. Small requests answer 200 with the list of written files; those over
    `TILEWRIGHT_PROCESS_INLINE_MAX_PIXELS` input pixels answer 202 with a `process` job.
    """
    settings = settings_of(request)
    resolved = await run_in_threadpool(_resolve_items, body.images, settings)
    params = {"images": resolved, "operations": body.operations, "format": body.format}
    pixels = await run_in_threadpool(_total_pixels, resolved, settings)
    if pixels > settings.process_inline_max_pixels:
        job, created = await run_in_threadpool(submit_job, settings, executor_of(request), "process", params)
        shown = public_job(settings, job)  # paths relative to their roots, as every job answer
        return JSONResponse(shown, status_code=202, headers={"Location": link(request, f"/jobs/{job['id']}")})
    return await run_in_threadpool(process_images, params, settings)


router.add_api_route(
    "/process",
    process,
    methods=["POST"],  # the token is checked by _ProcessRoute, before the body is read (not a dependency)
    status_code=200,
    response_model=None,
    route_class_override=_ProcessRoute,
    responses={202: {"description": "a large request: the `process` job it became"}, **responses(403, 404, 415)},
)


def _resolve_items(items: list[ImageItem], settings: Settings) -> list[dict[str, str]]:
    """Each input resolved to a file: a request may name up to 1000 images, so all of them share one thread
    hop and one database session. InputError (400) for the first bad item."""
    resolved = []
    with session_scope(settings) as session:
        for item in items:
            process_target(item.output, settings)  # InputError (400) for absolute, '..' or escaping names
            resolved.append({"input": _resolve_input(session, item.input, settings), "output": item.output})
    return resolved


def _resolve_input(session: Session, value: str, settings: Settings) -> str:
    """An uploaded image's id -> its file; otherwise a path, which must lie inside an input root."""
    if _ID.match(value):
        image = session.get(Image, value)
        if image is not None:
            return image.path
    if not value.strip():
        raise InputError("an image input is empty")
    return str(allowed_input(value, settings))


def _total_pixels(items: list[dict[str, str]], settings: Settings) -> int:
    total = 0
    for item in items:
        try:
            with Source(item["input"], settings) as source:
                total += source.width * source.height
        except TilewrightError:
            raise
        except pyvips.Error as exc:
            raise ApiError(415, f"{Path(item['input']).name}: cannot read it: {one_line(exc, 200)}") from None
    return total
