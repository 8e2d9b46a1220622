"""IIIF Image API 3 on the tile service: info.json and image requests (run on the tile pool).

The protocol (URL parsing, the info document) is `server/iiif.py`, pure; this is where it meets
slides: the server's limits, the slide's grid, rendering, mirroring, rotation and qualities.
"""

from __future__ import annotations

import json

import pyvips
from fastapi import Request
from fastapi.responses import Response

from tilewright.config import Settings
from tilewright.server import iiif
from tilewright.server.cache import Handle
from tilewright.server.errors import ApiError
from tilewright.server.proxy import public_base
from tilewright.server.tiles import urls
from tilewright.server.tiles.render import (
    MAX_SIDE,
    cached_response,
    encode,
    grid,
    not_modified,
    render_region,
    stored_tile,
)
from tilewright.server.tiles.service import TileService, etag_of

IMAGE_PROFILE_LINK = f'<{iiif.PROTOCOL}/3/level2.json>;rel="profile"'
"""The `Link` header of every image and information response: the compliance level (Image API 3 §6;
shared with the fast path)."""

CONTEXT_LINK = f'<{iiif.CONTEXT}>;rel="http://www.w3.org/ns/json-ld#context";type="application/ld+json"'
"""The `Link` to the JSON-LD context when info.json goes out as plain `application/json` (JSON-LD 1.1
§6.1, "Interpreting JSON as JSON-LD"); as `application/ld+json` the context is in the media type."""

LD_MEDIA_TYPE = f'application/ld+json;profile="{iiif.CONTEXT}"'


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    """`Accept`'s media ranges with their q (1 when not given, 0 when unreadable: RFC 9110 §12.5.1)."""
    ranges = []
    for part in accept.lower().split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media:
            ranges.append((media, q))
    return ranges


def info_media_type(accept: str | None) -> str:
    """The representation of info.json a request's `Accept` asks for (Image API 3.0 §5.1).

    The spec: with no `Accept`, `application/ld+json` with the context as its profile; with one, follow
    content negotiation. So JSON-LD unless the client names `application/json` and not JSON-LD (a
    wildcard, `*/*` as browsers and curl send, or an unrelated type gets the server's choice: JSON-LD).
    A range with q=0 is a refusal, not a wish.
    """
    named = {media for media, q in _media_ranges(accept or "") if q > 0}
    if "application/json" in named and "application/ld+json" not in named:
        return "application/json"
    return LD_MEDIA_TYPE


def iiif_what(req: iiif.Request, quality: int) -> str:
    """The cache name of an IIIF image request (shared with the fast path)."""
    return f"iiif:{req.canonical()}:q{quality}"


def iiif_limits(settings: Settings) -> iiif.Limits:
    return iiif.Limits(max_width=MAX_SIDE, max_height=MAX_SIDE, max_area=settings.max_region_pixels)


def info(svc: TileService, request: Request, image_id: str) -> Response:
    record = svc.record(image_id)
    found = grid(svc, record)
    tile = found.tile or svc.settings.iiif_tile_size
    base = public_base(svc.settings, request) + urls.IIIF_BASE.url(image_id=image_id)
    doc = iiif.info(base, found.width, found.height, tile, **iiif_limits(svc.settings))
    # Two representations, chosen by `Accept` (Image API 3 §5.1): caches must key on it (Vary), and each
    # has its own ETag, so that a 304 never confirms the other one.
    media = info_media_type(request.headers.get("accept"))
    linked_data = media == LD_MEDIA_TYPE
    etag = etag_of(record.key(f"info:{base}:{tile}:{svc.settings.max_region_pixels}:{media}"))
    links = IMAGE_PROFILE_LINK if linked_data else f"{IMAGE_PROFILE_LINK}, {CONTEXT_LINK}"
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Accept", "Link": links}
    if not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(json.dumps(doc), media_type=media, headers=headers)


def _apply(image: pyvips.Image, req: iiif.Request, background: list[int]) -> pyvips.Image:
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


def image(
    svc: TileService, request: Request, image_id: str, region: str, size: str, rotation: str, quality_format: str
) -> Response:
    record = svc.record(image_id)
    width, height = grid(svc, record).size
    try:
        req = iiif.parse(region, size, rotation, quality_format, width, height, **iiif_limits(svc.settings))
    except iiif.IiifError as exc:
        raise ApiError(400, str(exc)) from None
    quality = svc.settings.quality

    def make(handle: Handle) -> bytes:
        if req.format == "jpg" and req.quality in ("default", "color") and not req.mirror and not req.rotation:
            stored = stored_tile(handle, req.x, req.y, req.w, req.h, req.out_w, req.out_h)
            if stored is not None:
                return stored
        rendered = render_region(handle, req.x, req.y, req.w, req.h, req.out_w, req.out_h)
        rendered = _apply(rendered, req, handle.reader.background)
        return encode(rendered, req.format, quality)

    response = cached_response(svc, request, record, iiif_what(req, quality), req.media_type, make)
    response.headers["Link"] = IMAGE_PROFILE_LINK
    return response
