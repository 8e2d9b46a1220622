"""The tile service of one app: its caches, open slides and threads, image records, cache keys and ETags.

`TileService` is made by the app's lifespan (`app.create_app`) and closed there; routes reach it with
`service(request)`. Its lookups do blocking I/O: they run on its thread pool (`TileService.run`),
except `cached`, the fast path's memory-only question.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from fastapi import Request

from tilewright.config import Settings
from tilewright.db import session_scope
from tilewright.formats import open_slide
from tilewright.jobs.models import Image
from tilewright.server.cache import SlideHandles, SourceKey, TileCache, TtlCache
from tilewright.server.errors import ApiError
from tilewright.server.prebuilt import LOOKUP_SECONDS, PrebuiltPyramids, Pyramid
from tilewright.server.tiles.urls import ID

P = ParamSpec("P")
T = TypeVar("T")

RECORD_SECONDS = LOOKUP_SECONDS  # records and pyramid lookups expire together (see prebuilt.LOOKUP_SECONDS)


@dataclass(frozen=True)
class Grid:
    """The tile grid of a slide: its size, and the tile size its dynamic tiles follow."""

    width: int
    height: int
    tile: int  # the source's own square tile size, or 0: the configured sizes apply

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


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

    def key(self, what: str) -> str:
        """The cache key of `what` (a tile's cache name, "grid", ...) of this version of the image."""
        return f"{self.id}:{self.tag}:{what}"


def etag_of(key: str) -> str:
    return '"' + hashlib.sha1(key.encode()).hexdigest()[:24] + '"'


def matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match header names `etag` (weak or strong, or `*`)."""
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


class TileService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = TileCache(settings.cache_bytes, settings.cache_url, settings.cache_ttl_seconds)
        self.handles = SlideHandles(lambda path: open_slide(path, settings), settings.slide_handles)
        self.records: TtlCache[Record] = TtlCache(RECORD_SECONDS)
        self.grids: TtlCache[Grid] = TtlCache(3600.0)  # by id and source version: never changes
        self.prebuilt = PrebuiltPyramids(settings, self.cache)
        self.pool = ThreadPoolExecutor(settings.tile_threads, thread_name_prefix="tiles")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` on the tile pool."""
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.pool, call)

    # -- lookups (in the pool) --------------------------------------------------------------
    def record(self, image_id: str) -> Record:
        if not ID.match(image_id):
            raise ApiError(404, f"no image {image_id!r}")
        cached = self.records.get(image_id)
        if cached is not None:
            return cached
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
        return self.prebuilt.find(record.id, record.collection)

    def known_grid(self, record: Record) -> Grid | None:
        """The slide's tile grid if it is known without I/O (`render.grid` measures it)."""
        return self.grids.get(record.key("grid"))

    # -- the fast path (on the event loop) ----------------------------------------------------
    def cached(
        self, image_id: str, what_of: Callable[[Record], str | None], if_none_match: str | None
    ) -> tuple[str, bytes | None] | None:
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
        key = record.key(what)
        etag = etag_of(key)
        if if_none_match and matches(if_none_match, etag):
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


def service(request: Request) -> TileService:
    """The app's tile service (made and closed by its lifespan)."""
    svc: TileService | None = getattr(request.app.state, "tiles", None)
    if svc is None:
        raise ApiError(503, "the tile service is not running (the app has not started, or is stopping)")
    return svc
