"""The tile routes (URLs from `urls`): parameters checked here, the work done on the tile pool.

Every image route answers HEAD as well as GET (`curl -I`, link checkers, caches revalidating), and
the images (tiles, IIIF images, thumbnails, associated images, regions) honour one byte range (`ranges`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from tilewright.server.errors import ApiError, responses
from tilewright.server.proxy import link
from tilewright.server.tiles import deepzoom, image_api, images, urls
from tilewright.server.tiles.ranges import ranged
from tilewright.server.tiles.render import MAX_SIDE
from tilewright.server.tiles.service import service
from tilewright.server.tiles.urls import FORMAT_PATTERN, TileUrl, parse_format

# the schema says which formats a URL takes; the route itself checks them (parse_format: a 400 naming the
# formats, not a pattern dump)
FORMAT_SCHEMA = {"pattern": FORMAT_PATTERN}

router = APIRouter(tags=["tiles"])
Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Response]])


def _get_and_head(url: TileUrl, summary: str) -> Callable[[Endpoint], Endpoint]:
    """Register a GET route and a HEAD route beside it.

    One route with both methods would give /openapi.json the same operation id twice; the HEAD twin
    stays out of the schema.
    """

    def register(endpoint: Endpoint) -> Endpoint:
        router.head(url.template, include_in_schema=False, summary=summary)(endpoint)
        return router.get(url.template, summary=summary)(endpoint)

    return register


# -- Deep Zoom ---------------------------------------------------------------------------------
@_get_and_head(urls.DZI, summary="Deep Zoom descriptor (pre-built when published, else dynamic)")
async def get_dzi(image_id: str, request: Request) -> Response:
    svc = service(request)
    return await svc.run(deepzoom.dzi, svc, request, image_id)


@_get_and_head(urls.DZ_TILE, summary="Deep Zoom tile (pre-built when published, else rendered from the source)")
async def get_dz_tile(
    image_id: str, level: int, col: int, row: int, request: Request, fmt: str = Path(json_schema_extra=FORMAT_SCHEMA)
) -> Response:
    svc = service(request)
    return ranged(request, await svc.run(deepzoom.dz_tile, svc, request, image_id, level, col, row, fmt))


# -- IIIF Image API 3 -------------------------------------------------------------------------------
@router.get(urls.IIIF_BASE.template, include_in_schema=False)
async def iiif_base(image_id: str, request: Request) -> Response:
    return RedirectResponse(link(request, urls.IIIF_INFO.url(image_id=image_id)), status_code=303)


@_get_and_head(urls.IIIF_INFO, summary="IIIF Image API 3 information document")
async def iiif_info(image_id: str, request: Request) -> Response:
    svc = service(request)
    return await svc.run(image_api.info, svc, request, image_id)


@_get_and_head(
    urls.IIIF_IMAGE,
    summary="IIIF Image API 3 image request (level 2, plus mirroring, arbitrary rotation, webp)",
)
async def iiif_image(
    image_id: str, region: str, size: str, rotation: str, quality_format: str, request: Request
) -> Response:
    svc = service(request)
    return ranged(
        request, await svc.run(image_api.image, svc, request, image_id, region, size, rotation, quality_format)
    )


# -- thumbnail, associated images, regions, info ---------------------------------------------------
@_get_and_head(urls.THUMBNAIL, summary="Thumbnail fitting size x size, from the smallest good level")
async def thumbnail(
    image_id: str,
    request: Request,
    size: int = Query(256, ge=1, le=images.MAX_THUMBNAIL),
    format: str = Query("jpg", description="jpg, png or webp", json_schema_extra=FORMAT_SCHEMA),
) -> Response:
    svc = service(request)
    fmt = parse_format(format)
    if size * size > svc.settings.max_region_pixels:
        raise ApiError(400, f"size {size} is over the limit (max_region_pixels {svc.settings.max_region_pixels:,})")
    return ranged(request, await svc.run(images.thumbnail, svc, request, image_id, size, fmt))


@_get_and_head(urls.ASSOCIATED, summary="Associated image: label, macro or thumbnail")
async def associated(
    image_id: str,
    name: str,
    request: Request,
    format: str = Query("jpg", description="jpg, png or webp", json_schema_extra=FORMAT_SCHEMA),
) -> Response:
    if name not in images.ASSOCIATED:
        raise ApiError(404, f"no associated image {name!r}; ask for one of {', '.join(images.ASSOCIATED)}")
    svc = service(request)
    fmt = parse_format(format)
    return ranged(request, await svc.run(images.associated, svc, request, image_id, name, fmt))


@_get_and_head(urls.REGION, summary="A region of one level (x, y in level-0 pixels, as OpenSlide)")
async def region(
    image_id: str,
    request: Request,
    x: int = Query(..., ge=-(2**31), le=2**31, description="left, in level-0 pixels"),
    y: int = Query(..., ge=-(2**31), le=2**31, description="top, in level-0 pixels"),
    w: int = Query(..., ge=1, le=MAX_SIDE),
    h: int = Query(..., ge=1, le=MAX_SIDE),
    level: int = Query(0, ge=0, le=64),
    format: str = Query("jpg", description="jpg, png or webp", json_schema_extra=FORMAT_SCHEMA),
) -> Response:
    svc = service(request)
    fmt = parse_format(format)
    if w * h > svc.settings.max_region_pixels:
        raise ApiError(
            400,
            f"region {w}x{h} = {w * h:,} pixels is over the limit of "
            f"{svc.settings.max_region_pixels:,} (TILEWRIGHT_MAX_REGION_PIXELS)",
        )
    return ranged(request, await svc.run(images.region, svc, request, image_id, x, y, w, h, level, fmt))


@router.get(
    urls.INFO.template,
    summary="The slide's metadata: size, levels, resolution (mpp), objective power, associated images, URLs",
    response_model=images.ImageInfo,
    responses=responses(400, 404, 413, 415, 422),
)
async def info(image_id: str, request: Request) -> dict[str, Any]:
    svc = service(request)
    return await svc.run(images.info, svc, request, image_id)


@router.get(urls.CACHE_STATS.template, summary="Tile cache statistics")
async def cache_stats(request: Request) -> dict[str, Any]:
    svc = service(request)
    return {**svc.cache.stats(), "open_slides": len(svc.handles), "slides_opened": svc.handles.opened}
