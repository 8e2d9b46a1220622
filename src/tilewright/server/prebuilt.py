"""Pre-built Deep Zoom pyramids: where an image's published pyramid is, and reading its files.

A conversion job publishes an upload's pyramid in up to two places (`jobs.kinds.convert.run`):

- local disk, `OUTPUT_ROOT/COLLECTION/ID/slide.dzi` and `slide_files/`, moved into place by one
  atomic rename: the `.dzi` being there means the whole pyramid is;
- the object store `output_store` (when set), `OUTPUT_STORE/COLLECTION/ID/`, uploaded tiles first and
  `manifest.json` last: only a manifest makes a pyramid published there (a half-uploaded one has
  none), and only files it lists are read from it.

`PrebuiltPyramids.find(image_id, collection)` looks on local disk first, then in the object store, and
keeps the answer for a few seconds (`LOOKUP_SECONDS`: a pyramid, or False for none).
A store's manifest (read by `Storage.read_manifest`, the one reader of the manifest format) is re-read
only when its etag changes (one HEAD per image every few seconds);
its tiles are checked against the manifest's sha256 when read and kept in the tile cache, keyed by
that hash. A tile the pyramid lacks (`Pyramid.tile` -> None), or one that cannot be read any more,
is rendered from the source instead. Everything here does blocking I/O: call it on the tile pool.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tilewright.config import Settings
from tilewright.errors import TilewrightError
from tilewright.jobs.publish import output_store, store_prefix
from tilewright.server.cache import TileCache, TtlCache
from tilewright.storage import MANIFEST, BlobNotFoundError, Storage, StorageError, join_key

log = logging.getLogger(__name__)

DZI = "slide.dzi"
FILES = "slide_files/"
MAX_MANIFEST_ENTRIES = 500_000  # tile entries of parsed manifests kept in memory (~170 bytes each)
#: how long an image record, and where its pyramid is (or that it has none), is trusted: a changed, deleted
#: or newly published image is noticed this fast (the tile service's records use the same)
LOOKUP_SECONDS = 2.0


def geometry(text: str) -> tuple[int, int, str]:
    """(tile size, overlap, format) of a .dzi document; -1 / "" for what it does not say."""
    size = re.search(r'TileSize="(\d+)"', text)
    overlap = re.search(r'Overlap="(\d+)"', text)
    fmt = re.search(r'Format="(\w+)"', text)
    return (int(size.group(1)) if size else -1, int(overlap.group(1)) if overlap else -1, fmt.group(1) if fmt else "")


@dataclass(frozen=True)
class Tile:
    """One file of a published pyramid, found but not read yet: `version` makes its ETag (no I/O needed)."""

    version: str
    read: Callable[[], bytes | None]  # None: gone or changed since it was listed (render it instead)


class Pyramid:
    """A published Deep Zoom pyramid: its .dzi, geometry, and tiles by (level, col, row, format)."""

    source = ""  # "local" or the store's scheme

    def __init__(self, dzi: bytes, version: str) -> None:
        self.dzi = dzi  # the descriptor's bytes, as published
        self.version = version  # changes whenever the pyramid is published again
        self.tile_size, self.overlap, self.format = geometry(dzi.decode("utf-8", "replace"))

    def tile(self, level: int, col: int, row: int, fmt: str) -> Tile | None:
        raise NotImplementedError


class LocalPyramid(Pyramid):
    source = "local"

    def __init__(self, dzi_path: Path, dzi: bytes, version: str) -> None:
        super().__init__(dzi, version)
        self.folder = dzi_path.with_name(FILES.rstrip("/"))

    def tile(self, level: int, col: int, row: int, fmt: str) -> Tile | None:
        if fmt != self.format:
            return None
        path = self.folder / str(level) / f"{col}_{row}.{fmt}"
        try:
            stat = path.stat()
        except OSError:
            return None

        def read() -> bytes | None:
            try:
                return path.read_bytes()
            except OSError:  # replaced by a new version between the stat and the read
                return None

        return Tile(f"{path}:{stat.st_size}:{stat.st_mtime_ns}", read)


class StorePyramid(Pyramid):
    """A pyramid in an object store, as its manifest lists it (tile name -> sha256)."""

    def __init__(
        self, owner: PrebuiltPyramids, store: Storage, prefix: str, etag: str, dzi: bytes, digests: dict[str, bytes]
    ) -> None:
        super().__init__(dzi, f"{etag}:{hashlib.sha256(dzi).hexdigest()[:16]}")
        self.source = store.scheme
        self.owner = owner
        self.store = store
        self.prefix = prefix
        self.url = store.url(prefix)
        self.digests = digests

    def tile(self, level: int, col: int, row: int, fmt: str) -> Tile | None:
        if fmt != self.format:
            return None
        name = f"{FILES}{level}/{col}_{row}.{fmt}"
        digest = self.digests.get(name)
        if digest is None:
            return None
        version = f"sha256:{digest.hex()}" if len(digest) == 32 else f"{self.url}/{name}:{self.version}"
        return Tile(version, lambda: self.owner._read_tile(self, name, digest, version))


class PrebuiltPyramids:
    """Finds and reads published pyramids: local disk first, then the object store (`output_store`)."""

    def __init__(self, settings: Settings, cache: TileCache) -> None:
        self.settings = settings
        self.lookups: TtlCache[Pyramid | Literal[False]] = TtlCache(LOOKUP_SECONDS)  # by image id
        self.cache = cache  # the tile service's: store tiles by sha256
        self._manifests: OrderedDict[str, tuple[str, StorePyramid]] = OrderedDict()  # url -> (etag, pyramid)
        self._entries = 0
        self._lock = threading.Lock()
        self._locks = [threading.Lock() for _ in range(64)]  # one lookup per image at a time
        self._store: tuple[Storage, str] | None = None
        self._store_ready = False
        self._store_down = False

    # -- finding --------------------------------------------------------------------------------
    def find(self, image_id: str, collection: str) -> Pyramid | None:
        """The published pyramid of an image, or None: its tiles are dynamic."""
        cached = self.lookups.get(image_id)
        if cached is not None:
            return cached or None
        with self._locks[hash(image_id) % len(self._locks)]:
            cached = self.lookups.get(image_id)
            if cached is None:
                cached = self._local(image_id, collection) or self._in_store(image_id, collection) or False
                self.lookups.put(image_id, cached)
        return cached or None

    def forget(self, image_id: str) -> None:
        self.lookups.pop(image_id)

    def known_unpublished(self, image_id: str) -> bool:
        """True when the image is known (for a few seconds) to have no published pyramid: no I/O."""
        return self.lookups.get(image_id) is False

    def _local(self, image_id: str, collection: str) -> LocalPyramid | None:
        path = self.settings.resolved_output_root() / collection / image_id / DZI
        try:
            stat = path.stat()
            data = path.read_bytes()
        except OSError:
            return None
        return LocalPyramid(path, data, f"{stat.st_size:x}-{stat.st_mtime_ns}")

    def store_location(self) -> tuple[Storage, str] | None:
        """(store, base key) of `output_store`, or None; for reads the store retries once: a tile falls back
        to rendering rather than waiting through the job's backoff."""
        if not self._store_ready:
            with self._lock:
                if not self._store_ready:
                    retries = min(1, self.settings.storage_retries)
                    try:
                        self._store = output_store(self.settings.model_copy(update={"storage_retries": retries}))
                    except TilewrightError as exc:
                        log.warning(
                            "pre-built pyramids: output store %r is unusable (%s); serving local "
                            "pyramids and dynamic tiles only",
                            self.settings.output_store,
                            exc,
                        )
                        self._store = None
                    self._store_ready = True
        return self._store

    def _in_store(self, image_id: str, collection: str) -> StorePyramid | None:
        location = self.store_location()
        if location is None:
            return None
        store, base = location
        prefix = store_prefix(base, collection, image_id)
        manifest_key = join_key(prefix, MANIFEST)
        try:
            etag = store.info(manifest_key).etag
            with self._lock:
                known = self._manifests.get(manifest_key)
                if known is not None and etag and known[0] == etag:
                    self._manifests.move_to_end(manifest_key)
                    self._up(store)
                    return known[1]
            pyramid = self._load(store, prefix, manifest_key, etag)
        except BlobNotFoundError:
            self._up(store)
            return None  # no manifest: not published (or half published)
        except (StorageError, TilewrightError) as exc:
            if not self._store_down:
                log.warning(
                    "pre-built pyramids: %s cannot be read (%s); rendering tiles from the source until it answers",
                    store.describe(),
                    exc,
                )
            self._store_down = True
            return None
        self._up(store)
        return pyramid

    def _up(self, store: Storage) -> None:
        if self._store_down:
            log.warning("pre-built pyramids: %s answers again", store.describe())
            self._store_down = False

    def _load(self, store: Storage, prefix: str, manifest_key: str, etag: str) -> StorePyramid | None:
        manifest = store.read_manifest(prefix)
        if manifest is None:  # gone since its HEAD, not JSON, or not a tilewright manifest
            log.debug("pre-built pyramids: %s is not a manifest (any more); ignored", store.url(manifest_key))
            return None
        digests: dict[str, bytes] = {}
        dzi_digest = None
        for entry in manifest.get("files") or []:
            path = str(entry.get("path", ""))
            digest = _digest(entry)
            if path == DZI:
                dzi_digest = digest
            elif path.startswith(FILES):
                digests[path] = digest
        if dzi_digest is None:
            return None  # a manifest of something else (a TIFF, IIIF): no Deep Zoom pyramid here
        dzi = store.read_bytes(join_key(prefix, DZI))
        if len(dzi_digest) == 32 and hashlib.sha256(dzi).digest() != dzi_digest:
            return None  # being published again: the next lookup sees the new manifest
        pyramid = StorePyramid(self, store, prefix, etag, dzi, digests)
        with self._lock:
            old = self._manifests.pop(manifest_key, None)
            if old is not None:
                self._entries -= len(old[1].digests)
            self._manifests[manifest_key] = (etag, pyramid)
            self._entries += len(digests)
            while self._entries > MAX_MANIFEST_ENTRIES and len(self._manifests) > 1:
                _, (_, dropped) = self._manifests.popitem(last=False)
                self._entries -= len(dropped.digests)
        return pyramid

    # -- reading ------------------------------------------------------------------------------------
    def _read_tile(self, pyramid: StorePyramid, name: str, digest: bytes, version: str) -> bytes | None:
        """A tile's bytes (tile cache, else the store), exactly the ones the manifest lists; None otherwise."""
        key = f"prebuilt:{version}"  # by content hash: the same tile of two versions (or images) is one entry
        data = self.cache.get(key)
        if data is not None:
            return data
        try:
            data = pyramid.store.read_bytes(join_key(pyramid.prefix, name))
        except BlobNotFoundError:
            data = None
        except StorageError as exc:
            log.warning("pre-built pyramids: %s: %s; rendering it instead", pyramid.store.url(pyramid.prefix), exc)
            return None
        if data is None or (len(digest) == 32 and hashlib.sha256(data).digest() != digest):
            return None  # deleted or replaced since the manifest was read (a new version on its way)
        self.cache.put(key, data)
        return data


def _digest(entry: dict[str, Any]) -> bytes:
    """The sha256 of a manifest entry (32 bytes), or its size when it has none (never checked then)."""
    try:
        digest = bytes.fromhex(str(entry.get("sha256") or ""))
    except ValueError:
        digest = b""
    return digest if len(digest) == 32 else f"size:{entry.get('size')}".encode()
