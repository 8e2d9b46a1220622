"""Deep Zoom: the .dzi descriptor and its tiles, pre-built when the image is published, else dynamic.

A published pyramid (`server/prebuilt.py`) is served as it is; a tile it lacks is rendered to fit
the .dzi being served. Dynamic tiles follow the slide's own tile grid when it has a good one
(`render.grid`), else the configured `dzi_tile_size` / `dzi_overlap`. Run on the tile pool.
"""

from __future__ import annotations

import math

from fastapi import Request
from fastapi.responses import Response

from tilewright.config import Settings
from tilewright.server import iiif
from tilewright.server.cache import Handle
from tilewright.server.errors import ApiError
from tilewright.server.tiles.render import cached_response, encode, grid, not_modified, render_region, stored_tile
from tilewright.server.tiles.service import Record, TileService, etag_of
from tilewright.server.tiles.urls import parse_format

UNPUBLISHED_CACHE_CONTROL = "no-cache"
"""`Cache-Control` of the Deep Zoom tiles of an image not yet published (shared with the fast path).

Their grid follows the source (e.g. 256/0) and the published pyramid's is another (254/1): the same
URL names another tile once the pyramid is published. So caches keep them only to revalidate (their
ETag names the grid); a published pyramid's tiles keep `tile_cache_control`."""


DZI_MEDIA_TYPE = "application/xml"
"""The `Content-Type` of a .dzi descriptor, dynamic or a file under /outputs (`routes_ui.OutputFiles`)."""


def dz_what(geometry: tuple[int, int], level: int, col: int, row: int, fmt_out: str, quality: int) -> str:
    """The cache name of a dynamic Deep Zoom tile (shared with the fast path)."""
    return f"dz:{geometry[0]}:{geometry[1]}:{level}:{col}:{row}:{fmt_out}:q{quality}"


def dz_levels(width: int, height: int) -> int:
    return int(math.ceil(math.log2(max(width, height, 1)))) + 1


def dzi_xml(width: int, height: int, tile: int, overlap: int, fmt: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="{fmt}" Overlap="{overlap}" '
        f'TileSize="{tile}"><Size Width="{width}" Height="{height}"/></Image>\n'
    )


def dz_geometry(settings: Settings, tile: int, overlap: int = 0) -> tuple[int, int]:
    """(tile size, overlap) of a Deep Zoom grid: `tile` and `overlap` when known (> 0), else the configured ones."""
    return (tile, overlap) if tile > 0 and overlap >= 0 else (settings.dzi_tile_size, settings.dzi_overlap)


def known_dz_geometry(svc: TileService, record: Record) -> tuple[int, int] | None:
    """The dynamic Deep Zoom geometry if it is known without I/O (the fast path's question)."""
    found = svc.known_grid(record)
    return None if found is None else dz_geometry(svc.settings, found.tile)


def dzi(svc: TileService, request: Request, image_id: str) -> Response:
    record = svc.record(image_id)
    published = svc.published_dzi(record)
    if published is not None:
        data = published.dzi
        key = record.key(f"dzi-prebuilt:{published.source}:{published.version}")
        source = "prebuilt"
    else:
        settings = svc.settings
        found = grid(svc, record)
        ts, overlap = dz_geometry(settings, found.tile)
        data = dzi_xml(found.width, found.height, ts, overlap, settings.tile_format).encode()
        key = record.key(f"dzi:{ts}:{overlap}:{settings.tile_format}")
        source = "dynamic"
    etag = etag_of(key)
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Tile-Source": source}
    if not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=DZI_MEDIA_TYPE, headers=headers)


def dz_tile(svc: TileService, request: Request, image_id: str, level: int, col: int, row: int, fmt: str) -> Response:
    fmt_out = parse_format(fmt)
    record = svc.record(image_id)
    settings = svc.settings
    published = svc.published_dzi(record)
    if published is not None:
        tile = published.tile(level, col, row, fmt)  # None: not a file of the pyramid (or not in its manifest)
        if tile is not None:
            etag = etag_of(tile.version)
            headers = {"ETag": etag, "Cache-Control": settings.tile_cache_control, "X-Tile-Source": "prebuilt"}
            if not_modified(request, etag):
                return Response(status_code=304, headers=headers)
            data = tile.read()  # None: gone or changed since the lookup: render it
            if data is not None:
                return Response(data, media_type=iiif.FORMATS[fmt_out], headers=headers)
        # a tile the pyramid lacks is rendered to fit the .dzi being served
        ts, overlap = dz_geometry(settings, published.tile_size, published.overlap)
        cache_control = settings.tile_cache_control
    else:
        ts, overlap = dz_geometry(settings, grid(svc, record).tile)
        cache_control = UNPUBLISHED_CACHE_CONTROL

    def make(handle: Handle) -> bytes:
        reader = handle.reader
        width, height = reader.width, reader.height
        top = dz_levels(width, height) - 1
        if level > top:
            raise ApiError(404, f"no Deep Zoom level {level} (levels 0..{top})")
        scale = 2 ** (top - level)
        lw, lh = -(-width // scale), -(-height // scale)
        if col * ts >= lw or row * ts >= lh:
            raise ApiError(404, f"no tile {col}_{row} at level {level} ({-(-lw // ts)} x {-(-lh // ts)} tiles)")
        x0, y0 = col * ts - (overlap if col else 0), row * ts - (overlap if row else 0)
        x1, y1 = min(lw, (col + 1) * ts + overlap), min(lh, (row + 1) * ts + overlap)
        rx, ry = x0 * scale, y0 * scale
        rw, rh = min(width, x1 * scale) - rx, min(height, y1 * scale) - ry
        stored = stored_tile(handle, rx, ry, rw, rh, x1 - x0, y1 - y0) if fmt_out == "jpg" else None
        return stored or encode(render_region(handle, rx, ry, rw, rh, x1 - x0, y1 - y0), fmt_out, settings.quality)

    what = dz_what((ts, overlap), level, col, row, fmt_out, settings.quality)
    response = cached_response(svc, request, record, what, iiif.FORMATS[fmt_out], make, cache_control)
    response.headers["X-Tile-Source"] = "dynamic"
    return response
