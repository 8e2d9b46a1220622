"""Tile serving: Deep Zoom (pre-built or dynamic), IIIF Image API 3, thumbnails, regions, associated images.

Every image is looked up by its id in the image records (routes_images / jobs.models.Image).
A published Deep Zoom pyramid is served as it is (`prebuilt.py`: local disk
`OUTPUT_ROOT/COLLECTION/ID/slide.dzi` first, then the object store `output_store`, manifest
first); until then (or for tiles it lacks) tiles are rendered from the source, read from the
best pyramid level for the scale asked (never from the full base for a low-resolution tile).

All libvips work runs on a bounded thread pool (`tile_threads`), never on the event loop:
a slow tile occupies one thread, the others keep being served. Encoded results are
cached (`TileCache`: in-process LRU, or Redis), open slides are kept (`SlideHandles`),
and every response carries an ETag computed from the request and the source file's size
and modification time, so `If-None-Match` gets a 304 without rendering anything.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyvips
from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from tilewright.config import Settings
from tilewright.server import iiif
from tilewright.server.cache import SlideHandles, SourceKey, TileCache, TtlCache
from tilewright.server.errors import ApiError
from tilewright.server.prebuilt import PrebuiltPyramids, Pyramid

log = logging.getLogger(__name__)
router = APIRouter(tags=["tiles"])


def _get_and_head(path: str, **kwargs):
    """Register a GET route and a HEAD route beside it (`curl -I`, link checkers, caches revalidating).

    One route with both methods would give /openapi.json the same operation id twice; the HEAD twin
    stays out of the schema.
    """

    def register(endpoint):
        router.head(path, include_in_schema=False, **kwargs)(endpoint)
        return router.get(path, **kwargs)(endpoint)

    return register


_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ASSOCIATED = ("label", "macro", "thumbnail")
MAX_SIDE = 16383  # the largest WebP; JPEG allows 65535
MAX_THUMBNAIL = 4096


# -- the service: caches, handles and threads of one app ------------------------------------------
@dataclass(frozen=True)
class Record:
    id: str
    collection: str
    path: Path
    kind: str
    source_key: SourceKey  # the key of its open handle (SlideHandles.key_of)

    @property
    def tag(self) -> str:
        """size-mtime of the source: part of every cache key and ETag, so a changed file is never served stale."""
        _path, size, mtime_ns = self.source_key
        return f"{size:x}-{mtime_ns:x}"


class TileService:
    def __init__(self, settings: Settings) -> None:
        from tilewright.formats import open_slide

        self.settings = settings
        self.cache = TileCache(settings.cache_bytes, settings.cache_url, settings.cache_ttl_seconds)
        self.handles = SlideHandles(lambda path: open_slide(path, settings), settings.slide_handles)
        self.records = TtlCache(2.0)
        self.sizes = TtlCache(3600.0)  # (width, height) by id and source version: never changes
        self.prebuilt = PrebuiltPyramids(settings, self.records, self.cache)  # "published:ID" in records
        self.pool = ThreadPoolExecutor(settings.tile_threads, thread_name_prefix="tiles")

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args))

    # -- lookups (in the pool) --------------------------------------------------------------
    def record(self, image_id: str) -> Record:
        if not _ID.match(image_id):
            raise ApiError(404, f"no image {image_id!r}")
        cached = self.records.get(image_id)
        if cached is not None:
            return cached
        from tilewright.db import session_scope
        from tilewright.jobs.models import Image

        with session_scope(self.settings) as session:
            image = session.get(Image, image_id)
            if image is None:
                raise ApiError(404, f"no image {image_id!r}")
            collection, path, kind = image.collection, Path(image.path), image.kind
        try:
            source_key = SlideHandles.key_of(path)
        except OSError:
            raise ApiError(404, f"the source file of image {image_id!r} is gone") from None
        record = Record(image_id, collection, path, kind, source_key)
        self.records.put(image_id, record)
        return record

    def published_dzi(self, record: Record) -> Pyramid | None:
        """The image's published pyramid (local disk, else the object store), looked up once every 2 s."""
        return self.prebuilt.find(record)

    def cached(self, image_id: str, what_of, if_none_match: str | None) -> tuple[str, bytes | None] | None:
        """(ETag, tile or None for a 304) of a tile already in the in-process cache, or None: render it.

        For the fast path (`fastpath.CachedTiles`), which runs on the event loop before routing:
        it answers only from memory (no I/O at all), so only the memory cache counts, and
        `what_of(record)` names the tile, or returns None when that needs I/O.
        """
        if self.cache.backend != "memory":
            return None
        record = self.records.get(image_id)
        if record is None:
            return None
        what = what_of(record)
        if what is None:
            return None
        key = _key(record, what)
        etag = _etag(key)
        if if_none_match and _matches(if_none_match, etag):
            return etag, None
        data = self.cache.local.get(key)
        if data is None:
            return None
        self.cache.hits += 1
        return etag, data

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.handles.clear()
        self.cache.close()


_service_lock = threading.Lock()


def service(request: Request) -> TileService:
    app = request.app
    svc = getattr(app.state, "tiles", None)
    if svc is None:
        with _service_lock:
            svc = getattr(app.state, "tiles", None)
            if svc is None:
                svc = app.state.tiles = TileService(app.state.settings)
    return svc


# -- rendering (in the pool) -----------------------------------------------------------------------
def _key(record: Record, what: str) -> str:
    return f"{record.id}:{record.tag}:{what}"


def _etag(key: str) -> str:
    return '"' + hashlib.sha1(key.encode()).hexdigest()[:24] + '"'


def _not_modified(request: Request, etag: str) -> bool:
    given = request.headers.get("if-none-match")
    return bool(given) and _matches(given, etag)


def _matches(if_none_match: str, etag: str) -> bool:
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def encode(image: pyvips.Image, fmt: str, quality: int) -> bytes:
    if fmt in ("jpg", "jpeg"):
        return image.jpegsave_buffer(Q=quality, keep="none")
    if fmt == "png":
        return image.pngsave_buffer(compression=3, keep="none")
    if fmt == "webp":
        return image.webpsave_buffer(Q=quality, keep="none")
    raise ApiError(400, f"unsupported image format {fmt!r}; choose jpg, png or webp")


def _level_box(reader, x: int, y: int, w: int, h: int, out_w: int, out_h: int) -> tuple[int, int, int, int, int]:
    """(level, x0, y0, x1, y1): the best pyramid level for a level-0 region at an output size, and the box in it."""
    downsample = max(1.0, min(w / out_w, h / out_h))
    level = reader.best_level_for_downsample(downsample)
    lvl = reader.levels[level]
    ds = lvl.downsample
    x0, y0 = max(0, int(math.floor(x / ds))), max(0, int(math.floor(y / ds)))
    x1, y1 = min(lvl.width, int(math.ceil((x + w) / ds))), min(lvl.height, int(math.ceil((y + h) / ds)))
    return level, x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def render_region(handle, x: int, y: int, w: int, h: int, out_w: int, out_h: int) -> pyvips.Image:
    """Level-0 region (x, y, w, h) scaled to out_w x out_h, read from the best pyramid level."""
    level, x0, y0, x1, y1 = _level_box(handle.reader, x, y, w, h, out_w, out_h)
    part = handle.level_image(level).crop(x0, y0, x1 - x0, y1 - y0)
    if (part.width, part.height) != (out_w, out_h):
        part = part.thumbnail_image(out_w, height=out_h, size="force")
    return part


def stored_tile(handle, x: int, y: int, w: int, h: int, out_w: int, out_h: int) -> bytes | None:
    """The source's own JPEG when the request is exactly one stored tile at its level's scale, else None.

    It is what `render_region` would return, without the decode and re-encode (see formats/jpegtiles.py);
    its quality is the file's, not TILEWRIGHT_QUALITY. Off with TILEWRIGHT_TILE_PASSTHROUGH=false.
    """
    reader = handle.reader
    if reader.jpeg_tiles is None or not reader.settings.tile_passthrough:
        return None
    level, x0, y0, x1, y1 = _level_box(reader, x, y, w, h, out_w, out_h)
    size = reader.jpeg_tiles.tile_size(level)
    if size is None or (x1 - x0, y1 - y0) != (out_w, out_h) or (out_w, out_h) != size:
        return None
    if x0 % size[0] or y0 % size[1]:
        return None
    return reader.stored_jpeg_tile(level, x0 // size[0], y0 // size[1])


def _render(svc: TileService, record: Record, make) -> bytes:
    """Run `make(handle) -> bytes` on an open slide; a failed read becomes a clean 4xx, not a 500."""
    from tilewright.errors import TilewrightError, one_line

    with svc.handles.open(record.path, record.source_key) as handle:
        failure: BaseException | None = None
        try:
            data = make(handle)
        except (ApiError, TilewrightError):
            raise
        except (pyvips.Error, ValueError, IndexError, OSError) as exc:
            failure = exc
        error = handle.reader.read_error() or failure  # a bridged read error says more than libvips's
        if error is not None:
            svc.handles.discard(handle)
            detail = one_line(error)
            raise ApiError(422, f"cannot read this part of image {record.id!r}: {detail}") from None
        return data


def _cached(
    svc: TileService, request: Request, record: Record, what: str, media: str, make, cache_control: str | None = None
) -> Response:
    key = _key(record, what)
    etag = _etag(key)
    headers = {"ETag": etag, "Cache-Control": cache_control or svc.settings.tile_cache_control}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    data = svc.cache.get(key)
    headers["X-Tile-Cache"] = "hit" if data is not None else "miss"
    if data is None:
        data = _render(svc, record, make)
        svc.cache.put(key, data)
    return Response(data, media_type=media, headers=headers)


def parse_format(fmt: str) -> str:
    """The format named in a URL as a key of `iiif.FORMATS` (the formats of every tile route), jpeg being jpg."""
    fmt = fmt.lower()
    fmt = "jpg" if fmt == "jpeg" else fmt
    if fmt not in iiif.FORMATS:
        raise ApiError(400, f"unsupported image format {fmt!r}; choose {', '.join(iiif.FORMATS)}")
    return fmt


# -- the tile grid of a slide ------------------------------------------------------------------
def _known_grid(svc: TileService, record: Record) -> tuple[int, int, int] | None:
    """`_grid` if it is known without I/O."""
    return svc.sizes.get(_key(record, "grid"))


def known_size(svc: TileService, record: Record) -> tuple[int, int] | None:
    """The slide's size if it is known without I/O (the fast path's question)."""
    found = _known_grid(svc, record)
    return None if found is None else found[:2]


def _grid(svc: TileService, record: Record) -> tuple[int, int, int]:
    """(width, height, tile): the slide's size and the tile size its dynamic tiles follow.

    With `tiles_follow_source` (the default) a tiled source's own square tile size (128..1024),
    so that a viewer's tiles are the stored tiles (passed through, or decoded once each);
    otherwise 0: the configured sizes apply.
    """
    cached = _known_grid(svc, record)
    if cached is None:

        def measure(handle) -> tuple[int, int, int]:
            reader = handle.reader
            tw, th = reader.tile_size
            follow = svc.settings.tiles_follow_source and reader.tiled and tw == th and 128 <= tw <= 1024
            return reader.width, reader.height, tw if follow else 0

        cached = _render(svc, record, measure)
        svc.sizes.put(_key(record, "grid"), cached)
    return cached


def _dz_geometry(settings: Settings, tile: int, overlap: int = 0) -> tuple[int, int]:
    """(tile size, overlap) of a Deep Zoom grid: `tile` and `overlap` when known (> 0), else the configured ones."""
    return (tile, overlap) if tile > 0 and overlap >= 0 else (settings.dzi_tile_size, settings.dzi_overlap)


def known_dz_geometry(svc: TileService, record: Record) -> tuple[int, int] | None:
    """The dynamic Deep Zoom geometry if it is known without I/O (the fast path's question)."""
    found = _known_grid(svc, record)
    return None if found is None else _dz_geometry(svc.settings, found[2])


# -- Deep Zoom ---------------------------------------------------------------------------------
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


def _dzi(svc: TileService, request: Request, image_id: str) -> Response:
    record = svc.record(image_id)
    published = svc.published_dzi(record)
    if published is not None:
        data = published.dzi
        key = _key(record, f"dzi-prebuilt:{published.source}:{published.version}")
        source = "prebuilt"
    else:
        settings = svc.settings
        grid = _grid(svc, record)
        ts, overlap = _dz_geometry(settings, grid[2])
        data = dzi_xml(grid[0], grid[1], ts, overlap, settings.tile_format).encode()
        key = _key(record, f"dzi:{ts}:{overlap}:{settings.tile_format}")
        source = "dynamic"
    etag = _etag(key)
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Tile-Source": source}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="application/xml", headers=headers)


def _dz_tile(svc: TileService, request: Request, image_id: str, level: int, col: int, row: int, fmt: str) -> Response:
    fmt_out = parse_format(fmt)
    record = svc.record(image_id)
    settings = svc.settings
    published = svc.published_dzi(record)
    if published is not None:
        tile = published.tile(level, col, row, fmt)  # None: not a file of the pyramid (or not in its manifest)
        if tile is not None:
            etag = _etag(tile.version)
            headers = {"ETag": etag, "Cache-Control": settings.tile_cache_control, "X-Tile-Source": "prebuilt"}
            if _not_modified(request, etag):
                return Response(status_code=304, headers=headers)
            data = tile.read()  # None: gone or changed since the lookup: render it
            if data is not None:
                return Response(data, media_type=iiif.FORMATS[fmt_out], headers=headers)
        # a tile the pyramid lacks is rendered to fit the .dzi being served
        ts, overlap = _dz_geometry(settings, published.tile_size, published.overlap)
    else:
        ts, overlap = _dz_geometry(settings, _grid(svc, record)[2])

    def make(handle) -> bytes:
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
    response = _cached(svc, request, record, what, iiif.FORMATS[fmt_out], make)
    response.headers["X-Tile-Source"] = "dynamic"
    return response


@_get_and_head("/images/{image_id}.dzi", summary="Deep Zoom descriptor (pre-built when published, else dynamic)")
async def get_dzi(image_id: str, request: Request) -> Response:
    svc = service(request)
    return await svc.run(_dzi, svc, request, image_id)


@_get_and_head(
    "/images/{image_id}_files/{level:int}/{col:int}_{row:int}.{fmt}",
    summary="Deep Zoom tile (pre-built when published, else rendered from the source)",
)
async def get_dz_tile(image_id: str, level: int, col: int, row: int, fmt: str, request: Request) -> Response:
    svc = service(request)
    return await svc.run(_dz_tile, svc, request, image_id, level, col, row, fmt)


# -- IIIF Image API 3 -------------------------------------------------------------------------------
def iiif_what(req: iiif.Request, quality: int) -> str:
    """The cache name of an IIIF image request (shared with the fast path)."""
    return f"iiif:{req.canonical()}:q{quality}"


def iiif_limits(settings: Settings) -> dict[str, int]:
    return {"max_width": MAX_SIDE, "max_height": MAX_SIDE, "max_area": settings.max_region_pixels}


def _iiif_info(svc: TileService, request: Request, image_id: str) -> Response:
    record = svc.record(image_id)
    width, height, source_tile = _grid(svc, record)
    tile = source_tile or svc.settings.iiif_tile_size
    base = str(request.base_url).rstrip("/") + f"/iiif/3/{image_id}"
    doc = iiif.info(base, width, height, tile, **iiif_limits(svc.settings))
    accept = request.headers.get("accept", "")
    media = f'application/ld+json;profile="{iiif.CONTEXT}"' if "application/ld+json" in accept else "application/json"
    etag = _etag(_key(record, f"info:{base}:{tile}:{svc.settings.max_region_pixels}"))
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Link": f'<{iiif.CONTEXT}>;rel="profile"'}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(json.dumps(doc), media_type=media, headers=headers)


def _apply_iiif(image: pyvips.Image, req: iiif.Request, background: list[int]) -> pyvips.Image:
    if req.mirror:
        image = image.fliphor()
    if req.rotation:
        if req.rotation in (90.0, 180.0, 270.0):
            image = image.rot(f"d{int(req.rotation)}")
        else:
            image = image.rotate(req.rotation, background=background[: image.bands])
    if req.quality in ("gray", "bitonal") and image.bands >= 3:
        image = image.colourspace("b-w")
    if req.quality == "bitonal":
        image = (image > 127).ifthenelse(255, 0).cast("uchar")
    return image


def _iiif_image(
    svc: TileService, request: Request, image_id: str, region: str, size: str, rotation: str, quality_format: str
) -> Response:
    record = svc.record(image_id)
    width, height = _grid(svc, record)[:2]
    try:
        req = iiif.parse(region, size, rotation, quality_format, width, height, **iiif_limits(svc.settings))
    except iiif.IiifError as exc:
        raise ApiError(400, str(exc)) from None
    quality = svc.settings.quality

    def make(handle) -> bytes:
        if req.format == "jpg" and req.quality in ("default", "color") and not req.mirror and not req.rotation:
            stored = stored_tile(handle, req.x, req.y, req.w, req.h, req.out_w, req.out_h)
            if stored is not None:
                return stored
        image = render_region(handle, req.x, req.y, req.w, req.h, req.out_w, req.out_h)
        image = _apply_iiif(image, req, handle.reader.background)
        return encode(image, req.format, quality)

    response = _cached(svc, request, record, iiif_what(req, quality), req.media_type, make)
    response.headers["Link"] = f'<{iiif.PROTOCOL}/3/level2.json>;rel="profile"'
    return response


@router.get("/iiif/3/{image_id}", include_in_schema=False)
async def iiif_base(image_id: str) -> Response:
    return RedirectResponse(f"/iiif/3/{image_id}/info.json", status_code=303)


@_get_and_head("/iiif/3/{image_id}/info.json", summary="IIIF Image API 3 information document")
async def iiif_info(image_id: str, request: Request) -> Response:
    svc = service(request)
    return await svc.run(_iiif_info, svc, request, image_id)


@_get_and_head(
    "/iiif/3/{image_id}/{region}/{size}/{rotation}/{quality_format}",
    summary="IIIF Image API 3 image request (level 2, plus mirroring, arbitrary rotation, webp)",
)
async def iiif_image(
    image_id: str, region: str, size: str, rotation: str, quality_format: str, request: Request
) -> Response:
    svc = service(request)
    return await svc.run(_iiif_image, svc, request, image_id, region, size, rotation, quality_format)


# -- thumbnail, associated images, regions, info ---------------------------------------------------
@_get_and_head("/images/{image_id}/thumbnail", summary="Thumbnail fitting size x size, from the smallest good level")
async def thumbnail(
    image_id: str,
    request: Request,
    size: int = Query(256, ge=1, le=MAX_THUMBNAIL),
    format: str = Query("jpg", description="jpg, png or webp"),
) -> Response:
    svc = service(request)
    fmt = parse_format(format)
    quality = svc.settings.quality
    if size * size > svc.settings.max_region_pixels:
        raise ApiError(400, f"size {size} is over the limit (max_region_pixels {svc.settings.max_region_pixels:,})")

    def work() -> Response:
        record = svc.record(image_id)
        return _cached(
            svc,
            request,
            record,
            f"thumb:{size}:{fmt}:q{quality}",
            iiif.FORMATS[fmt],
            lambda handle: encode(_thumbnail(handle, size), fmt, quality),
        )

    return await svc.run(work)


def _thumbnail(handle, size: int) -> pyvips.Image:
    reader = handle.reader
    level = reader.best_level_for_downsample(max(1.0, max(reader.width, reader.height) / size))
    return handle.level_image(level).thumbnail_image(size, height=size, size="down")


@_get_and_head("/images/{image_id}/associated/{name}", summary="Associated image: label, macro or thumbnail")
async def associated(
    image_id: str, name: str, request: Request, format: str = Query("jpg", description="jpg, png or webp")
) -> Response:
    if name not in _ASSOCIATED:
        raise ApiError(404, f"no associated image {name!r}; ask for one of {', '.join(_ASSOCIATED)}")
    svc = service(request)
    fmt = parse_format(format)
    quality = svc.settings.quality

    def make(handle) -> bytes:
        if name not in handle.reader.associated_names:
            raise ApiError(
                404,
                f"image {image_id!r} has no {name} image "
                f"(it has: {', '.join(handle.reader.associated_names) or 'none'})",
            )
        return encode(handle.reader.associated(name), fmt, quality)

    def work() -> Response:
        record = svc.record(image_id)
        return _cached(svc, request, record, f"assoc:{name}:{fmt}:q{quality}", iiif.FORMATS[fmt], make)

    return await svc.run(work)


@_get_and_head("/images/{image_id}/region", summary="A region of one level (x, y in level-0 pixels, as OpenSlide)")
async def region(
    image_id: str,
    request: Request,
    x: int = Query(..., ge=-(2**31), le=2**31, description="left, in level-0 pixels"),
    y: int = Query(..., ge=-(2**31), le=2**31, description="top, in level-0 pixels"),
    w: int = Query(..., ge=1, le=MAX_SIDE),
    h: int = Query(..., ge=1, le=MAX_SIDE),
    level: int = Query(0, ge=0, le=64),
    format: str = Query("jpg"),
) -> Response:
    svc = service(request)
    fmt = parse_format(format)
    quality = svc.settings.quality
    if w * h > svc.settings.max_region_pixels:
        raise ApiError(
            400,
            f"region {w}x{h} = {w * h:,} pixels is over the limit of "
            f"{svc.settings.max_region_pixels:,} (TILEWRIGHT_MAX_REGION_PIXELS)",
        )

    def make(handle) -> bytes:
        levels = len(handle.reader.levels)
        if level >= levels:
            raise ApiError(400, f"no level {level}: this image has levels 0..{levels - 1}")
        pixels = handle.reader.region(x, y, w, h, level)
        return encode(pixels, fmt, quality)

    def work() -> Response:
        record = svc.record(image_id)
        return _cached(
            svc, request, record, f"region:{x}:{y}:{w}:{h}:{level}:{fmt}:q{quality}", iiif.FORMATS[fmt], make
        )

    return await svc.run(work)


@router.get("/images/{image_id}/info", summary="The slide's metadata: size, levels, resolution, properties, URLs")
async def info(image_id: str, request: Request) -> dict:
    svc = service(request)

    def work() -> dict:
        record = svc.record(image_id)
        data = _render(svc, record, lambda handle: handle.reader.info().to_dict())
        data.pop("path", None)  # the server's file layout is nobody's business
        published = svc.published_dzi(record)
        data.update(
            id=image_id,
            collection=record.collection,
            kind=record.kind,
            dzi=f"/images/{image_id}.dzi",
            iiif=f"/iiif/3/{image_id}/info.json",
            thumbnail=f"/images/{image_id}/thumbnail",
            tiles="prebuilt" if published is not None else "dynamic",
            associated=[f"/images/{image_id}/associated/{n}" for n in data["associated_images"] if n in _ASSOCIATED],
        )
        return data

    return await svc.run(work)


@router.get("/tiles/cache", summary="Tile cache statistics")
async def cache_stats(request: Request) -> dict:
    svc = service(request)
    return {**svc.cache.stats(), "open_slides": len(svc.handles), "slides_opened": svc.handles.opened}
