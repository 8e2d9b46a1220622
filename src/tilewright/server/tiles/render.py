"""Rendering on an open slide (in the tile pool): regions from the best level, stored tiles, encoding, the
slide's tile grid, and the cached response every rendered answer goes through."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import pyvips
from fastapi import Request
from fastapi.responses import Response

from tilewright.errors import TilewrightError, one_line
from tilewright.server.cache import Handle
from tilewright.server.errors import ApiError
from tilewright.server.tiles.service import Grid, Record, TileService, etag_of, matches

T = TypeVar("T")

MAX_SIDE = 16383  # the largest WebP; JPEG allows 65535


def encode(image: pyvips.Image, fmt: str, quality: int) -> bytes:
    if fmt in ("jpg", "jpeg"):
        return image.jpegsave_buffer(Q=quality, keep="none")
    if fmt == "png":
        return image.pngsave_buffer(compression=3, keep="none")
    if fmt == "webp":
        return image.webpsave_buffer(Q=quality, keep="none")
    raise ApiError(400, f"unsupported image format {fmt!r}; choose jpg, png or webp")


def _level_box(
    handle: Handle, x: int, y: int, w: int, h: int, out_w: int, out_h: int
) -> tuple[int, int, int, int, int]:
    """(level, x0, y0, x1, y1): the best pyramid level for a level-0 region at an output size, and the box in it."""
    reader = handle.reader
    downsample = max(1.0, min(w / out_w, h / out_h))
    level = reader.best_level_for_downsample(downsample)
    lvl = reader.levels[level]
    ds = lvl.downsample
    x0, y0 = max(0, int(math.floor(x / ds))), max(0, int(math.floor(y / ds)))
    x1, y1 = min(lvl.width, int(math.ceil((x + w) / ds))), min(lvl.height, int(math.ceil((y + h) / ds)))
    return level, x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def render_region(handle: Handle, x: int, y: int, w: int, h: int, out_w: int, out_h: int) -> pyvips.Image:
    """Level-0 region (x, y, w, h) scaled to out_w x out_h, read from the best pyramid level."""
    level, x0, y0, x1, y1 = _level_box(handle, x, y, w, h, out_w, out_h)
    part = handle.level_image(level).crop(x0, y0, x1 - x0, y1 - y0)
    if (part.width, part.height) != (out_w, out_h):
        part = part.thumbnail_image(out_w, height=out_h, size="force")
    return part


def stored_tile(handle: Handle, x: int, y: int, w: int, h: int, out_w: int, out_h: int) -> bytes | None:
    """The source's own JPEG when the request is exactly one stored tile at its level's scale, else None.

    It is what `render_region` would return, without the decode and re-encode (see formats/jpegtiles.py);
    its quality is the file's, not TILEWRIGHT_QUALITY. Off with TILEWRIGHT_TILE_PASSTHROUGH=false.
    """
    reader = handle.reader
    if reader.jpeg_tiles is None or not reader.settings.tile_passthrough:
        return None
    level, x0, y0, x1, y1 = _level_box(handle, x, y, w, h, out_w, out_h)
    size = reader.jpeg_tiles.tile_size(level)
    if size is None or (x1 - x0, y1 - y0) != (out_w, out_h) or (out_w, out_h) != size:
        return None
    if x0 % size[0] or y0 % size[1]:
        return None
    return reader.stored_jpeg_tile(level, x0 // size[0], y0 // size[1])


def render(svc: TileService, record: Record, make: Callable[[Handle], T]) -> T:
    """`make(handle)` on the image's open slide; a failed read becomes a clean 4xx, not a 500."""
    with svc.handles.open(record.path, record.source_key) as handle:
        failure: BaseException | None = None
        try:
            result = make(handle)
        except (ApiError, TilewrightError):
            raise
        except (pyvips.Error, ValueError, IndexError, OSError) as exc:
            failure = exc
        error = handle.reader.read_error() or failure  # a bridged read error says more than libvips's
        if error is not None:
            svc.handles.discard(handle)
            detail = one_line(error)
            raise ApiError(422, f"cannot read this part of image {record.id!r}: {detail}") from None
        return result


def not_modified(request: Request, etag: str) -> bool:
    given = request.headers.get("if-none-match")
    return bool(given) and matches(given or "", etag)


def cached_response(
    svc: TileService,
    request: Request,
    record: Record,
    what: str,
    media: str,
    make: Callable[[Handle], bytes],
    cache_control: str | None = None,
) -> Response:
    """The answer for the encoded image `what` (its cache name) of `record`: a 304, the cached bytes, or
    `make(handle)`'s, then cached (`X-Tile-Cache` says which)."""
    key = record.key(what)
    etag = etag_of(key)
    headers = {"ETag": etag, "Cache-Control": cache_control or svc.settings.tile_cache_control}
    if not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    data = svc.cache.get(key)
    headers["X-Tile-Cache"] = "hit" if data is not None else "miss"
    if data is None:
        data = render(svc, record, make)
        svc.cache.put(key, data)
    return Response(data, media_type=media, headers=headers)


def grid(svc: TileService, record: Record) -> Grid:
    """The slide's size and the tile size its dynamic tiles follow (measured once per source version).

    With `tiles_follow_source` (the default) a tiled source's own square tile size (128..1024),
    so that a viewer's tiles are the stored tiles (passed through, or decoded once each);
    otherwise 0: the configured sizes apply.
    """
    known = svc.known_grid(record)
    if known is not None:
        return known

    def measure(handle: Handle) -> Grid:
        reader = handle.reader
        tw, th = reader.tile_size
        follow = svc.settings.tiles_follow_source and reader.tiled and tw == th and 128 <= tw <= 1024
        return Grid(reader.width, reader.height, tw if follow else 0)

    measured = render(svc, record, measure)
    svc.grids.put(record.key("grid"), measured)
    return measured
