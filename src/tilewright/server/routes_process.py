"""`/resize` (one image in the body, the resized image back) and `/process` (an operation chain over
several stored images, inline when small, as a `process` job when large). Issue 4.

All libvips work runs in the thread pool, so requests proceed in parallel; bad input is
always a 4xx JSON error (`{"error", "detail"}`), never a 500.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyvips
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from tilewright.config import Settings
from tilewright.db import session_scope
from tilewright.errors import InputError, TilewrightError
from tilewright.jobs.models import Image
from tilewright.jobs.service import submit_job
from tilewright.jobs.tasks import process_images, process_target
from tilewright.ops import OperationError, Source, apply_chain, encode, parse_chain
from tilewright.paths import allowed_input
from tilewright.server.deps import executor_of, require_token, settings_of
from tilewright.server.errors import ApiError, error_response
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
    return error_response(status, " ".join(str(exc).split()), index=exc.index, op=exc.op, param=exc.param)


# -- /resize ---------------------------------------------------------------------------------------


@router.post(
    "/resize",
    dependencies=[Depends(require_token)],
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}, "image/avif": {}}}},
)
async def resize(request: Request) -> Response:
    """Resize the image in the body to fit inside `width` x `height` (aspect kept; one side may be omitted).

    Query: `width`, `height` (1..16384), `quality` (1..100), `format` (jpeg, png, webp, avif; default: the
    input's when it is one of those, else jpeg). Answers the image with `X-Original-Size` and `X-Resized-Size`.
    """
    settings = settings_of(request)
    width = _int_param(request, "width", 1, MAX_SIDE)
    height = _int_param(request, "height", 1, MAX_SIDE)
    quality = _int_param(request, "quality", 1, 100)
    if width is None and height is None:
        raise ApiError(400, "give width and/or height (1..16384)")
    fmt = (request.query_params.get("format") or "").strip().lower() or None
    fmt = {"jpg": "jpeg"}.get(fmt, fmt)
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
        encoded, original = await run_in_threadpool(_resize_file, body.path, steps, settings)
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
            "X-Original-Size": f"{original[0]}x{original[1]}",
            "X-Resized-Size": f"{encoded.width}x{encoded.height}",
        },
    )


def _resize_file(path: Path, steps, settings):
    try:
        with Source(path, settings) as source:
            original = (source.width, source.height)
            header = source.header()
            loader = header.get("vips-loader") if header is not None and "vips-loader" in header.get_fields() else ""
            default = next((f for f in ("png", "webp") if loader.startswith(f)), "jpeg")
            image, rest = source.load(steps)
            images = apply_chain(image, rest, settings)
            return encode(images[0], default), original
    except OperationError as exc:
        if getattr(exc, "http_status", 400) == 413:
            raise
        raise ApiError(400, exc.reason) from None
    except pyvips.Error as exc:
        raise ApiError(415, f"cannot decode the image: {' '.join(str(exc).split())[:200]}") from None


# -- /process --------------------------------------------------------------------------------------


@router.post("/process", dependencies=[Depends(require_token)], status_code=200)
async def process(request: Request):
    """Apply `operations` (left to right) to each of `images` and write `output` under OUTPUT_ROOT/processed/.

    Body: `{"images": [{"input": IMAGE_ID or PATH, "output": "NAME.png"}], "operations": ["split", "resize=0.5"],
    "format": "webp"}`. Small requests answer 200 with the list of written files; those over
    `TILEWRIGHT_PROCESS_INLINE_MAX_PIXELS` input pixels answer 202 with a `process` job.
    """
    settings = settings_of(request)
    try:
        body = json.loads(await request.body() or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, 'the body must be JSON: {"images": [...], "operations": [...]}') from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object with 'images' and 'operations'")
    unknown = set(body) - {"images", "operations", "format"}
    if unknown:
        raise ApiError(400, f"unknown fields: {', '.join(sorted(unknown))}")
    operations = body.get("operations", [])
    if not isinstance(operations, list):
        raise ApiError(400, "'operations' must be a list")
    try:
        parse_chain(operations)
    except OperationError as exc:
        return _operation_error(exc)
    fmt = body.get("format")
    if fmt is not None and fmt not in ("jpeg", "jpg", "png", "webp", "avif", "tiff", "tif"):
        raise ApiError(400, f"format must be jpeg, png, webp, avif or tiff, not {str(fmt)[:20]!r}")
    items = body.get("images")
    if not isinstance(items, list) or not items:
        raise ApiError(400, '\'images\' must be a non-empty list of {"input": ..., "output": ...}')
    if len(items) > 1000:
        raise ApiError(400, "at most 1000 images per request")
    resolved = await run_in_threadpool(_resolve_items, items, settings)
    params = {"images": resolved, "operations": operations, "format": fmt}
    pixels = await run_in_threadpool(_total_pixels, resolved, settings)
    if pixels > settings.process_inline_max_pixels:
        job, created = await run_in_threadpool(submit_job, settings, executor_of(request), "process", params)
        return JSONResponse(job, status_code=202, headers={"Location": f"/jobs/{job['id']}"})
    try:
        return await run_in_threadpool(process_images, params, settings)
    except OperationError as exc:
        return _operation_error(exc)


def _resolve_items(items: list[Any], settings: Settings) -> list[dict[str, str]]:
    """`images` checked and each input resolved to a file: a request may name up to 1000 images, so all of
    them share one thread hop and one database session. ApiError/InputError (400) for the first bad item."""
    resolved = []
    with session_scope(settings) as session:
        for number, item in enumerate(items):
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("input"), str)
                or not isinstance(item.get("output"), str)
            ):
                raise ApiError(400, f'images[{number}] must be {{"input": string, "output": string}}')
            process_target(item["output"], settings)  # InputError (400) for absolute, '..' or escaping names
            resolved.append({"input": _resolve_input(session, item["input"], settings), "output": item["output"]})
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


def _total_pixels(items: list[dict], settings) -> int:
    total = 0
    for item in items:
        try:
            with Source(item["input"], settings) as source:
                total += source.width * source.height
        except TilewrightError:
            raise
        except pyvips.Error as exc:
            raise ApiError(415, f"{Path(item['input']).name}: cannot read it: {str(exc).strip()[:200]}") from None
    return total
