"""Cached tiles answered before routing, on the event loop.

A viewer asks for the same tiles again and again (every pan, every other viewer of the
same slide). Once a tile is in the in-process cache, the answer is a dictionary lookup,
yet going through routing, parameter validation and a thread hop costs ten times more
than the lookup itself. `CachedTiles` is a plain ASGI middleware that matches the two
tile URL shapes of the URL table (`urls.DZ_TILE`, `urls.IIIF_IMAGE`), asks
`TileService.cached` (memory only, no I/O) and answers a hit or a 304 itself; everything
else, including every miss, goes on to the routes unchanged, which render the tile and
put it in the cache. The cache names come from the same functions the routes use
(`dz_what`, `iiif_what`), so both paths always agree on what a tile is, and a `Range` is
chosen by the routes' own `ranges.pick` (an unsatisfiable one goes to the routes for their 416).

It sits inside the CORS and metrics middleware (added first in `create_app`), so its
answers carry the same CORS headers and are counted like any other request (under the
route name `TileUrl.route`, the router's own name for the same URL).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette._utils import get_route_path  # the router's own rule: the path under the root path
from starlette.types import ASGIApp, Receive, Scope, Send

from tilewright.server import iiif
from tilewright.server.metrics import ROUTE_KEY
from tilewright.server.tiles import urls
from tilewright.server.tiles.deepzoom import UNPUBLISHED_CACHE_CONTROL, dz_what, known_dz_geometry
from tilewright.server.tiles.image_api import IMAGE_PROFILE_LINK, iiif_limits, iiif_what
from tilewright.server.tiles.ranges import ACCEPT_RANGES, Unsatisfiable, content_range, pick
from tilewright.server.tiles.service import Record, TileService
from tilewright.server.tiles.urls import parse_format

_IIIF_LINK = IMAGE_PROFILE_LINK.encode()
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Answer:
    route: str  # the route's name, as the router gives it
    status: int
    headers: Headers
    body: bytes


class CachedTiles:
    """ASGI middleware: a GET (or HEAD) of a tile that is in the memory cache is answered here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            svc: TileService | None = getattr(scope["app"].state, "tiles", None)
            if svc is not None:
                answer = _lookup(svc, scope)
                if answer is not None:
                    scope[ROUTE_KEY] = answer.route
                    await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
                    body = answer.body if scope["method"] == "GET" else b""
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _lookup(svc: TileService, scope: Scope) -> Answer | None:
    """The answer for a cached tile, or None: the routes answer."""
    settings = svc.settings
    path, if_none_match = get_route_path(scope), _header(scope, b"if-none-match")
    what_of: Callable[[Record], str | None]
    fields = urls.DZ_TILE.match(path)
    if fields is not None:
        level, col, row = int(fields["level"]), int(fields["col"]), int(fields["row"])
        fmt_out = parse_format(fields["fmt"])

        def dz_what_of(record: Record) -> str | None:
            geometry = known_dz_geometry(svc, record)
            if geometry is None or not svc.prebuilt.known_unpublished(record.id):
                return None  # published (its files are served from storage), or not known yet
            return dz_what(geometry, level, col, row, fmt_out, settings.quality)

        what_of, url = dz_what_of, urls.DZ_TILE
        cache_control = UNPUBLISHED_CACHE_CONTROL  # it answers only tiles of images not yet published
        extra = [(b"x-tile-source", b"dynamic")]
        media_of = [iiif.FORMATS[fmt_out]]
    else:
        fields = urls.IIIF_IMAGE.match(path)
        if fields is None:
            return None
        media_of = []

        def iiif_what_of(record: Record) -> str | None:
            found = svc.known_grid(record)
            if found is None:
                return None
            try:
                req = iiif.parse(
                    fields["region"],
                    fields["size"],
                    fields["rotation"],
                    fields["quality_format"],
                    found.width,
                    found.height,
                    **iiif_limits(settings),
                )
            except iiif.IiifError:
                return None  # the route answers the 400
            media_of.append(req.media_type)
            return iiif_what(req, settings.quality)

        what_of, url = iiif_what_of, urls.IIIF_IMAGE
        cache_control = settings.tile_cache_control
        extra = [(b"link", _IIIF_LINK)]
    found = svc.cached(fields["image_id"], what_of, if_none_match)
    if found is None:
        return None
    etag, data = found
    headers = [(b"etag", etag.encode()), (b"cache-control", cache_control.encode()), *extra]
    if data is None:
        return Answer(url.route, 304, headers, b"")
    try:
        chosen = pick(scope["method"], _header(scope, b"range"), _header(scope, b"if-range"), etag, len(data))
    except Unsatisfiable:
        return None  # the route answers the 416
    status, size = 200, len(data)
    headers += [(b"content-type", media_of[-1].encode()), (b"accept-ranges", ACCEPT_RANGES.encode())]
    if chosen is not None:
        status, data = 206, data[chosen[0] : chosen[1] + 1]
        headers.append((b"content-range", content_range(*chosen, size).encode()))
    headers += [(b"content-length", str(len(data)).encode()), (b"x-tile-cache", b"hit")]
    return Answer(url.route, status, headers, data)
