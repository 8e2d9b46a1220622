"""Whole-image answers of the tile service: thumbnails, associated images, regions of one level, and the
slide's info document (run on the tile pool; the routes check their parameters first)."""

from __future__ import annotations

from typing import Any

import pyvips
from fastapi import Request
from fastapi.responses import Response

from tilewright.server import iiif
from tilewright.server.cache import Handle
from tilewright.server.errors import ApiError
from tilewright.server.proxy import link
from tilewright.server.tiles import urls
from tilewright.server.tiles.render import cached_response, encode, render
from tilewright.server.tiles.service import TileService

ASSOCIATED = ("label", "macro", "thumbnail")
MAX_THUMBNAIL = 4096


def _thumbnail_image(handle: Handle, size: int) -> pyvips.Image:
    reader = handle.reader
    level = reader.best_level_for_downsample(max(1.0, max(reader.width, reader.height) / size))
    return handle.level_image(level).thumbnail_image(size, height=size, size="down")


def thumbnail(svc: TileService, request: Request, image_id: str, size: int, fmt: str) -> Response:
    """A thumbnail fitting size x size, from the smallest good level."""
    quality = svc.settings.quality
    record = svc.record(image_id)
    return cached_response(
        svc,
        request,
        record,
        f"thumb:{size}:{fmt}:q{quality}",
        iiif.FORMATS[fmt],
        lambda handle: encode(_thumbnail_image(handle, size), fmt, quality),
    )


def associated(svc: TileService, request: Request, image_id: str, name: str, fmt: str) -> Response:
    """The associated image `name` (one of `ASSOCIATED`)."""
    quality = svc.settings.quality

    def make(handle: Handle) -> bytes:
        if name not in handle.reader.associated_names:
            raise ApiError(
                404,
                f"image {image_id!r} has no {name} image "
                f"(it has: {', '.join(handle.reader.associated_names) or 'none'})",
            )
        return encode(handle.reader.associated(name), fmt, quality)

    record = svc.record(image_id)
    return cached_response(svc, request, record, f"assoc:{name}:{fmt}:q{quality}", iiif.FORMATS[fmt], make)


def region(
    svc: TileService, request: Request, image_id: str, x: int, y: int, w: int, h: int, level: int, fmt: str
) -> Response:
    """The region (x, y, w, h) of one level, x and y in level-0 pixels (as OpenSlide)."""
    quality = svc.settings.quality

    def make(handle: Handle) -> bytes:
        levels = len(handle.reader.levels)
        if level >= levels:
            raise ApiError(400, f"no level {level}: this image has levels 0..{levels - 1}")
        return encode(handle.reader.region(x, y, w, h, level), fmt, quality)

    record = svc.record(image_id)
    what = f"region:{x}:{y}:{w}:{h}:{level}:{fmt}:q{quality}"
    return cached_response(svc, request, record, what, iiif.FORMATS[fmt], make)


def info(svc: TileService, request: Request, image_id: str) -> dict[str, Any]:
    """The slide's metadata (`SlideInfo`, without its path), its record, and the URLs it is served at
    (under the root path)."""
    record = svc.record(image_id)
    data = render(svc, record, lambda handle: handle.reader.info().to_dict())
    data.pop("path", None)  # the server's file layout is nobody's business
    published = svc.published_dzi(record)
    data.update(
        id=image_id,
        collection=record.collection,
        kind=record.kind,
        dzi=link(request, urls.DZI.url(image_id=image_id)),
        iiif=link(request, urls.IIIF_INFO.url(image_id=image_id)),
        thumbnail=link(request, urls.THUMBNAIL.url(image_id=image_id)),
        tiles="prebuilt" if published is not None else "dynamic",
        associated=[
            link(request, urls.ASSOCIATED.url(image_id=image_id, name=n))
            for n in data["associated_images"]
            if n in ASSOCIATED
        ],
    )
    return data
