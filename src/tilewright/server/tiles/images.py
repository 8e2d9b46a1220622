"""Whole-image answers of the tile service: thumbnails, associated images, regions of one level, and the
slide's info document (run on the tile pool; the routes check their parameters first)."""

from __future__ import annotations

from typing import Any, Literal

import pyvips
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from tilewright.server import iiif
from tilewright.server.cache import Handle
from tilewright.server.errors import ApiError
from tilewright.server.proxy import link
from tilewright.server.tiles import urls
from tilewright.server.tiles.render import cached_response, encode, render
from tilewright.server.tiles.service import TileService

ASSOCIATED = ("label", "macro", "thumbnail")
MAX_THUMBNAIL = 4096


class LevelInfo(BaseModel):
    width: int
    height: int
    downsample: float = Field(description="Level-0 pixels per pixel of this level.")


class Size(BaseModel):
    width: int
    height: int


class ImageInfo(BaseModel):
    """`GET /images/{id}/info`: the slide's metadata (as `tilewright info`), and the URLs it is served at."""

    id: str
    collection: str
    kind: str = Field(description="The output kind its upload asked for.")
    format: str
    reader: str
    vendor: str | None
    width: int = Field(description="Level-0 width, in pixels.")
    height: int
    bands: int
    levels: list[LevelInfo]
    tile_width: int
    tile_height: int
    tiled: bool
    mpp_x: float | None = Field(description="Microns per level-0 pixel across (None: the file does not say).")
    mpp_y: float | None = Field(description="Microns per level-0 pixel down.")
    objective_power: float | None = Field(description="The scanner's objective magnification (20 for 20x).")
    associated_images: dict[str, Size] = Field(description="Every associated image the file holds, by name.")
    associated: list[str] = Field(
        description=f"URLs of the associated images the server serves ({', '.join(ASSOCIATED)}), under the root path."
    )
    properties: dict[str, str] = Field(description="The file's own metadata, as its reader gives it.")
    dzi: str
    iiif: str
    thumbnail: str
    tiles: Literal["prebuilt", "dynamic"] = Field(
        description="prebuilt: the .dzi and its tiles are a published pyramid; dynamic: rendered from the source."
    )


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
