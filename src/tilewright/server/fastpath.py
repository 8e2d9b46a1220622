"""Cached tiles answered before routing, on the event loop.

A viewer asks for the same tiles again and again (every pan, every other viewer of the
same slide). Once a tile is in the in-process cache, the answer is a dictionary lookup,
yet going through routing, parameter validation and a thread hop costs ten times more
than the lookup itself. `CachedTiles` is a plain ASGI middleware that matches the two
tile URL shapes (Deep Zoom and IIIF), asks `TileService.cached` (memory only, no I/O)
and answers a hit or a 304 itself; everything else, including every miss, goes on to
the routes unchanged, which render the tile and put it in the cache. The cache names
come from the same functions the routes use (`dz_what`, `iiif_what`), so both paths
always agree on what a tile is.

It sits inside the CORS and metrics middleware (added first in `create_app`), so its
answers carry the same CORS headers and are counted like any other request.
"""

from __future__ import annotations

import re

from tilewright.server import iiif
from tilewright.server.routes_tiles import (
    Record,
    TileService,
    dz_what,
    iiif_limits,
    iiif_what,
    known_dz_geometry,
    known_size,
    parse_format,
)

_DZ = re.compile(r"^/images/([A-Za-z0-9_-]{1,64})_files/(\d{1,2})/(\d{1,9})_(\d{1,9})\.(jpg|jpeg|png|webp)$")
_IIIF = re.compile(r"^/iiif/3/([A-Za-z0-9_-]{1,64})/([^/]+)/([^/]+)/([^/]+)/([^/]+)$")
DZ_ROUTE = "/images/{image_id}_files/{level}/{col}_{row}.{fmt}"
IIIF_ROUTE = "/iiif/3/{image_id}/{region}/{size}/{rotation}/{quality_format}"
_IIIF_LINK = f'<{iiif.PROTOCOL}/3/level2.json>;rel="profile"'.encode()


class CachedTiles:
    """ASGI middleware: a GET (or HEAD) of a tile that is in the memory cache is answered here."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            svc: TileService | None = getattr(scope["app"].state, "tiles", None)
            if svc is not None:
                answer = _lookup(svc, scope["path"], _header(scope, b"if-none-match"))
                if answer is not None:
                    route, status, headers, body = answer
                    scope["tilewright.route"] = route  # for the metrics middleware
                    await send({"type": "http.response.start", "status": status, "headers": headers})
                    await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
                    return
        await self.app(scope, receive, send)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _lookup(svc: TileService, path: str, if_none_match: str | None):
    """(route, status, headers, body) for a cached tile, or None."""
    settings = svc.settings
    match = _DZ.match(path)
    if match is not None:
        image_id, level, col, row, fmt = match.groups()
        fmt_out = parse_format(fmt)

        def what_of(record: Record) -> str | None:
            geometry = known_dz_geometry(svc, record)
            if geometry is None or not svc.prebuilt.known_unpublished(record.id):
                return None  # published (its files are served from storage), or not known yet
            return dz_what(geometry, int(level), int(col), int(row), fmt_out, settings.quality)

        extra = [(b"x-tile-source", b"dynamic")]
        route, media = DZ_ROUTE, iiif.FORMATS[fmt_out]
    else:
        match = _IIIF.match(path)
        if match is None:
            return None
        image_id, region, size, rotation, quality_format = match.groups()
        media_of: list[str] = []

        def what_of(record: Record) -> str | None:
            dims = known_size(svc, record)
            if dims is None:
                return None
            try:
                req = iiif.parse(region, size, rotation, quality_format, *dims, **iiif_limits(settings))
            except iiif.IiifError:
                return None  # the route answers the 400
            media_of.append(req.media_type)
            return iiif_what(req, settings.quality)

        extra = [(b"link", _IIIF_LINK)]
        route, media = IIIF_ROUTE, ""
    found = svc.cached(image_id, what_of, if_none_match)
    if found is None:
        return None
    etag, data = found
    media = media or media_of[0]
    headers = [(b"etag", etag.encode()), (b"cache-control", settings.tile_cache_control.encode()), *extra]
    if data is None:
        return route, 304, headers, b""
    headers += [
        (b"content-type", media.encode()),
        (b"content-length", str(len(data)).encode()),
        (b"x-tile-cache", b"hit"),
    ]
    return route, 200, headers, data
