"""`POST /api/resize`: the HTTP resize of the Azure Functions upload pipeline, answered as that function
answered it (issue 14), so that its clients work against `tilewright serve` by changing only the host.

The contract is that of the pipeline's `resize_on_demand` (its `function_app.py`, Pillow; published in
"How to Build a Serverless Image Processing Pipeline with Azure Functions in Python", nawazdhandala,
OneUptime blog): query `width`, `height` (default 300) and `quality` (default 85) read with Python's
`int()`, else 400 `Invalid width, height, or quality parameter`; an empty body is 400
`No image data in request body` (both `text/plain`, checked in that order); the image is fitted inside
`width` x `height` and never enlarged (Pillow's `thumbnail`), flattened on white, and always answered as
JPEG (4:2:0, optimised, no metadata, as Pillow writes it) with `Content-Disposition: inline;
filename=resized_{width}x{height}.jpg` (the numbers asked for) and the byte counts `X-Original-Size`
(`len(image_data)`) and `X-Resized-Size` (`len(result)`). The pixel sizes come as `X-Original-Dimensions`
and `X-Resized-Dimensions`, as from `/resize`.

The work is `/resize`'s (`routes_process.resize_file`: the `thumbnail`, `format` and `strip` operations);
what that function answered 500 (a box of 0 or less, an undecodable body) is a 4xx here (docs/migrating.md).
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from tilewright.ops import OperationError, Step, parse_chain
from tilewright.server.deps import require_token, settings_of
from tilewright.server.errors import ApiError
from tilewright.server.routes_process import resize_file, size_headers
from tilewright.server.upload import discard, stream_body

router = APIRouter(tags=["compatibility"])

BAD_PARAMETERS = "Invalid width, height, or quality parameter"
NO_BODY = "No image data in request body"
DEFAULTS = {"width": "300", "height": "300", "quality": "85"}
#: Pillow's JPEG encoder takes quality -1 as its default (75) and clamps any other value into 1..100
PILLOW_DEFAULT_QUALITY = 75
#: the `thumbnail` operation's largest box side; a larger box changes nothing (it never enlarges)
BOX_MAX = 1_000_000

_TEXT: dict[str, Any] = {"content": {"text/plain": {}}}
_JSON_ERROR: dict[str, Any] = {"content": {"application/json": {}}}


def require_function_key(request: Request) -> None:
    """The write token (`TILEWRIGHT_API_TOKEN`) as `Authorization: Bearer`, or where a Functions client sends
    its function key: the `x-functions-key` header or the `code` query parameter (compared in constant time)."""
    token = settings_of(request).api_token
    key = request.headers.get("x-functions-key") or request.query_params.get("code")
    if (
        token is not None
        and key is not None
        and secrets.compare_digest(key.encode(), token.get_secret_value().encode())
    ):
        return
    require_token(request)


def _parameters(request: Request) -> tuple[int, int, int] | None:
    """(width, height, quality) as the function read them, `int()` of the text or its default; None if one is not."""
    try:
        width, height, quality = (int(request.query_params.get(name, default)) for name, default in DEFAULTS.items())
    except ValueError:
        return None
    return width, height, quality


def _steps(width: int, height: int, quality: int) -> list[Step]:
    """Pillow's `thumbnail((width, height))` then `save(format="JPEG", quality=...)`, as operations."""
    quality = PILLOW_DEFAULT_QUALITY if quality == -1 else min(100, max(1, quality))
    try:
        return parse_chain(
            [
                {"op": "thumbnail", "width": min(width, BOX_MAX), "height": min(height, BOX_MAX)},
                {"op": "format", "format": "jpeg", "quality": quality, "chroma": "420"},  # Pillow's subsampling
                "strip",  # Pillow writes no EXIF, XMP or ICC profile unless told to
            ]
        )
    except OperationError as exc:  # not reached with the values above; kept a 400, never a 500
        raise ApiError(400, exc.reason) from None


@router.post(
    "/api/resize",
    dependencies=[Depends(require_function_key)],
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "the resized image, always JPEG"},
        400: {**_TEXT, "description": f"`{BAD_PARAMETERS}` or `{NO_BODY}` (plain text, as the function said)"},
        401: {**_JSON_ERROR, "description": "a write token is set and the request has not got it"},
        413: {**_JSON_ERROR, "description": "over TILEWRIGHT_AZURE_RESIZE_MAX_BYTES or the pixel limit"},
        415: {**_JSON_ERROR, "description": "the body is not an image tilewright can decode"},
    },
)
async def azure_resize(request: Request) -> Response:
    """The Azure Functions pipeline's resize: the body's image fitted inside `width` x `height` (default 300,
    never enlarged), always JPEG at `quality` (default 85), with the byte counts in `X-Original-Size` and
    `X-Resized-Size`. See docs/migrating.md."""
    settings = settings_of(request)
    parameters = _parameters(request)
    if parameters is None:
        return PlainTextResponse(BAD_PARAMETERS, status_code=400)
    width, height, quality = parameters
    limit = settings.azure_resize_max_bytes
    try:
        body = await stream_body(
            request, settings.work_root() / "resize", limit, empty=NO_BODY, setting="TILEWRIGHT_AZURE_RESIZE_MAX_BYTES"
        )
    except ApiError as exc:
        if exc.status == 400:
            return PlainTextResponse(NO_BODY, status_code=400)
        raise
    try:
        if width <= 0 or height <= 0:  # Pillow's "height and width must be > 0", which the function answered 500
            return PlainTextResponse(BAD_PARAMETERS, status_code=400)
        encoded, original = await run_in_threadpool(resize_file, body.path, _steps(width, height, quality), settings)
    finally:
        discard(body.path)
    return Response(
        encoded.data,
        media_type="image/jpeg",
        headers={
            "Content-Disposition": f"inline; filename=resized_{width}x{height}.jpg",
            **size_headers(body.size, original, encoded),
        },
    )
