"""Stored JPEG tiles of a tiled TIFF, handed out as they are: no decode, no re-encode.

Most slides (Aperio SVS, pyramidal TIFFs written by libvips, many OME-TIFFs) store each
tile as a JPEG. When a viewer asks for exactly one such tile at its own scale, the
cheapest correct answer is those bytes: decoding and re-encoding costs two orders of
magnitude more than a `pread`, and loses quality. (large_image serves JPEG tiles the
same way.) A TIFF tile is an abbreviated JPEG stream whose tables live once in the
page's JPEGTables tag; `JpegTiles.tile` splices them back into a complete file.

Only what is safe goes through: 8-bit, 3-band, interleaved, JPEG-compressed, RGB or
YCbCr pages, and tiles that lie wholly inside the level (edge tiles are padded in the
file and must be cropped: those are rendered). Colour needs care: a TIFF says in its
Photometric tag whether the JPEG data is YCbCr or plain RGB, while a stand-alone JPEG
says it with an Adobe marker that TIFF writers leave out (Aperio stores RGB-coded tiles
that a browser would otherwise decode as YCbCr, in false colours). So the first time a
level is used, one tile is decoded the way a browser decodes it, as stored and with an
Adobe "no transform" marker, and compared with libvips's reading through libtiff; the
spelling that matches is kept for the level, and a level where neither matches is
never passed through.

Conversion copies the same stored tiles into a pyramidal TIFF (outputs/passthrough.py): there the
tiles stay abbreviated, their tables go into the output page's JPEGTables and the Photometric tag
is copied, so a reader of the output decodes them exactly as it decodes the source (`raw_tiles`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyvips

from tilewright.errors import InputError

log = logging.getLogger(__name__)

_JPEG = 7
_RGB, _YCBCR = 2, 6
#: APP14 "Adobe", version 100, no flags, transform 0: the components are R, G, B (not YCbCr)
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"


#: a run of tiles stored back to back is read with one `pread` of at most this many bytes (`raw_tiles`)
_RUN_BYTES = 8 << 20


@dataclass
class StoredLevel:
    """One level's stored JPEG tiles: where they are in the file and how to decode them."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    offsets: tuple[int, ...]
    counts: tuple[int, ...]
    tables: bytes  # JPEGTables without its EOI, or b"" when every tile carries its own tables
    photometric: int
    subsampling: tuple[int, int] | None  # YCbCrSubSampling, for YCbCr pages
    verified: bool | None = None  # None: not checked yet
    marker: bytes = b""  # what goes after SOI: ADOBE_RGB for RGB-coded data (found by `_verify`)

    @property
    def jpegtables(self) -> bytes | None:
        """The JPEGTables tag as the file stores it (None when the tiles carry their own tables)."""
        return self.tables + b"\xff\xd9" if self.tables else None

    @property
    def tiles(self) -> int:
        return len(self.offsets)


class JpegTiles:
    """The stored JPEG tiles of some levels of one TIFF file, read with `os.pread` (thread-safe)."""

    def __init__(self, path: Path, levels: dict[int, StoredLevel]) -> None:
        self.path = Path(path)
        self._levels = levels
        self._fd: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_pages(cls, path: Path, pages: Mapping[int, object]) -> JpegTiles | None:
        """From tifffile pages by level (the keyframes of the pyramid); None when no level qualifies."""
        levels: dict[int, StoredLevel] = {}
        for level, page in pages.items():
            found = _level_of(page)
            if found is not None:
                levels[level] = found
        return cls(path, levels) if levels else None

    def level(self, level: int) -> StoredLevel | None:
        """What `level` stores, when its tiles are JPEG that may be handed out; else None."""
        return self._levels.get(level)

    def tile_size(self, level: int) -> tuple[int, int] | None:
        found = self._levels.get(level)
        return None if found is None else (found.tile_width, found.tile_height)

    def tile(self, level: int, col: int, row: int, level_image: Callable[[int], pyvips.Image]) -> bytes | None:
        """Tile (col, row) of `level` as a complete JPEG file, or None when it must be rendered."""
        found = self._levels.get(level)
        if found is None or found.verified is False:
            return None
        tw, th = found.tile_width, found.tile_height
        if col < 0 or row < 0 or (col + 1) * tw > found.width or (row + 1) * th > found.height:
            return None  # outside, or an edge tile padded in the file
        data = self._read(found, row * -(-found.width // tw) + col)
        if data is None:
            return None
        if found.verified is None and not self._verify(level, found, col, row, data, level_image):
            return None
        return b"\xff\xd8" + found.marker + data[2:] if found.marker else data

    def raw_tiles(self, level: int) -> Iterator[bytes]:
        """Every stored tile of `level` in tile order, byte for byte as in the file (abbreviated streams: their
        tables are `StoredLevel.jpegtables`); tiles stored back to back are read in runs of up to 8 MiB.

        InputError when the file is shorter than its tile offsets say.
        """
        found = self._levels[level]
        offsets, counts = found.offsets, found.counts
        fd = os.open(self.path, os.O_RDONLY)  # its own handle: a long sequential read beside the server's preads
        try:
            index, total = 0, len(offsets)
            while index < total:
                start = end = offsets[index]
                stop = index  # the run: tiles index..stop-1, each starting where the one before ends
                while stop < total and offsets[stop] == end and end - start < _RUN_BYTES:
                    end += counts[stop]
                    stop += 1
                try:
                    data = os.pread(fd, end - start, start)
                except OSError as exc:
                    raise InputError(f"cannot read the tiles of level {level}: {exc.strerror}", path=self.path) from exc
                if len(data) != end - start:
                    raise InputError(f"file ends inside the tiles of level {level}", path=self.path)
                position = 0
                for tile in range(index, stop):
                    yield data[position : position + counts[tile]]
                    position += counts[tile]
                index = stop
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    # -- internals ------------------------------------------------------------------
    def _read(self, found: StoredLevel, index: int) -> bytes | None:
        if index >= len(found.offsets) or not found.counts[index]:
            return None  # a sparse tile (no data stored): rendering fills it with the background
        if self._fd is None:
            with self._lock:
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_RDONLY)
        data = os.pread(self._fd, found.counts[index], found.offsets[index])
        if len(data) != found.counts[index] or data[:2] != b"\xff\xd8":
            return None  # truncated or not a JPEG: let the renderer report it
        return found.tables + data[2:] if found.tables else data

    def _verify(
        self,
        level: int,
        found: StoredLevel,
        col: int,
        row: int,
        data: bytes,
        level_image: Callable[[int], pyvips.Image],
    ) -> bool:
        """Decode `data` as a browser would, with and without an Adobe RGB marker, against libtiff's reading."""
        import numpy as np  # lazy: numpy (a seventh of a second with tifffile) is never needed for a JPEG

        with self._lock:
            if found.verified is not None:
                return found.verified
            markers = [ADOBE_RGB, b""] if found.photometric == _RGB else [b"", ADOBE_RGB]
            diffs = []
            try:
                theirs = (
                    level_image(level)
                    .crop(col * found.tile_width, row * found.tile_height, found.tile_width, found.tile_height)
                    .numpy()
                    .astype(np.int16)
                )
                for marker in markers:
                    ours = pyvips.Image.jpegload_buffer(b"\xff\xd8" + marker + data[2:]).numpy().astype(np.int16)
                    diffs.append(float(np.abs(ours - theirs).mean()) if ours.shape == theirs.shape else float("inf"))
            except (pyvips.Error, ValueError, OSError) as exc:
                log.debug("stored JPEG tiles of %s level %d: %s", self.path, level, exc)
            for marker, diff in zip(markers, diffs, strict=True):
                if diff < 2.0:
                    found.marker, found.verified = marker, True
                    return True
            log.info(
                "%s level %d: stored JPEG tiles decode differently from libtiff (mean differences %s); "
                "they are re-encoded instead",
                self.path.name,
                level,
                diffs,
            )
            found.verified = False
            return False


def refusal(page) -> str | None:
    """Why a tifffile page's tiles cannot be handed out as stored JPEG, or None when they can."""
    try:
        if not page.is_tiled:
            return "not tiled"
        if page.compression != _JPEG:
            return f"{_compression_name(page.compression)}-compressed, not JPEG"
        if page.photometric not in (_RGB, _YCBCR):
            return f"photometric {_photometric_name(page.photometric)}, not RGB or YCbCr"
        if page.samplesperpixel != 3 or page.bitspersample != 8 or page.planarconfig != 1:
            return f"{page.samplesperpixel} samples of {page.bitspersample} bits, not 3 interleaved 8-bit ones"
        if getattr(page, "imagedepth", 1) != 1:
            return "a volume (image depth above 1)"
        tables = page.jpegtables or b""
        if tables and not (tables.startswith(b"\xff\xd8") and tables.endswith(b"\xff\xd9")):
            return "its JPEGTables are not a tables-only JPEG stream"
    except (AttributeError, TypeError, ValueError) as exc:
        return f"unreadable tags: {exc}"
    return None


def _compression_name(value: object) -> str:
    return getattr(value, "name", None) or f"compression {value}"


def _photometric_name(value: object) -> str:
    return getattr(value, "name", None) or str(value)


def _level_of(page) -> StoredLevel | None:
    reason = refusal(page)
    if reason is not None:
        log.debug("no stored JPEG tiles: %s", reason)
        return None
    tables = page.jpegtables or b""
    subsampling = getattr(page, "subsampling", None)
    return StoredLevel(
        page.imagewidth,
        page.imagelength,
        page.tilewidth,
        page.tilelength,
        tuple(page.dataoffsets),
        tuple(page.databytecounts),  # tifffile's tuples: not copied
        tables[:-2],
        int(page.photometric),
        tuple(subsampling) if subsampling and page.photometric == _YCBCR else None,
    )
