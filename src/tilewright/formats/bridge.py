"""A lazy bridge from any tile-reading library into the libvips pipeline.

The pyvips-binary wheel has no `openslideload` and no JPEG 2000, so formats that
only OpenSlide, wsidicom or tifffile decode need another way in. This module
presents such a level to libvips as a *virtual* uncompressed tiled BigTIFF: the
header and tile index are built in memory, and when libtiff asks for the bytes of
tile N, `read_tile` is called for just that tile. libvips pulls tiles as its
pipeline needs them, so a level is never held in memory whole and the writers
(dzsave, tiffsave) stream exactly as they do for native files.

One source serialises its reads (libtiff holds a lock per file), so a wide level
is cut into vertical stripes, each its own virtual TIFF, joined with `arrayjoin`:
libvips threads working on different stripes then decode in parallel.
"""

from __future__ import annotations

import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import pyvips

if TYPE_CHECKING:
    import numpy as np

# read_tile(x, y, w, h) -> uint8 array (h, w, bands), in the level's own pixel coordinates.
TileReader = Callable[[int, int, int, int], "np.ndarray"]

_TIFF_LONG, _TIFF_SHORT, _TIFF_LONG8 = 4, 3, 16
_PHOTOMETRIC = {1: 1, 3: 2}  # bands -> BlackIsZero / RGB
_CACHED_TILES = 16


class VirtualTiff:
    """One stripe of a level, served as an uncompressed tiled BigTIFF through a `pyvips.SourceCustom`."""

    def __init__(
        self, width: int, height: int, bands: int, tile: int, read_tile: TileReader, x_offset: int = 0
    ) -> None:
        if bands not in _PHOTOMETRIC:
            raise ValueError(f"bridge supports 1 or 3 bands, not {bands}")
        self.width, self.height, self.bands, self.tile = width, height, bands, tile
        self._read_tile = read_tile
        self._x_offset = x_offset
        self.tiles_across = -(-width // tile)
        self.tiles_down = -(-height // tile)
        self.tile_bytes = tile * tile * bands
        self.error: BaseException | None = None
        self._header = self._build_header()
        self.size = self.data_start + self.tiles_across * self.tiles_down * self.tile_bytes
        self._pos = 0
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.source = pyvips.SourceCustom()
        # the raw signal rather than on_read(): it lets a failed tile read return -1 and fail loudly
        self.source.signal_connect("read", self._on_read)
        self.source.on_seek(self._on_seek)

    def _build_header(self) -> bytes:
        n = self.tiles_across * self.tiles_down
        entries = 11
        ifd_offset = 16
        arrays = ifd_offset + 8 + entries * 20 + 8
        offsets_at, counts_at = arrays, arrays + 8 * n
        self.data_start = -(-(counts_at + 8 * n) // 4096) * 4096

        def entry(tag: int, kind: int, count: int, value: bytes) -> bytes:
            return struct.pack("<HHQ", tag, kind, count) + value.ljust(8, b"\0")

        bps = struct.pack("<" + "H" * self.bands, *([8] * self.bands))
        if n == 1:  # a single value is stored inline in the entry
            offsets_value = struct.pack("<Q", self.data_start)
            counts_value = struct.pack("<Q", self.tile_bytes)
        else:
            offsets_value, counts_value = struct.pack("<Q", offsets_at), struct.pack("<Q", counts_at)
        ifd = (
            struct.pack("<Q", entries)
            + b"".join(
                [
                    entry(256, _TIFF_LONG, 1, struct.pack("<I", self.width)),
                    entry(257, _TIFF_LONG, 1, struct.pack("<I", self.height)),
                    entry(258, _TIFF_SHORT, self.bands, bps),
                    entry(259, _TIFF_SHORT, 1, struct.pack("<H", 1)),
                    entry(262, _TIFF_SHORT, 1, struct.pack("<H", _PHOTOMETRIC[self.bands])),
                    entry(277, _TIFF_SHORT, 1, struct.pack("<H", self.bands)),
                    entry(284, _TIFF_SHORT, 1, struct.pack("<H", 1)),
                    entry(322, _TIFF_LONG, 1, struct.pack("<I", self.tile)),
                    entry(323, _TIFF_LONG, 1, struct.pack("<I", self.tile)),
                    entry(324, _TIFF_LONG8, n, offsets_value),
                    entry(325, _TIFF_LONG8, n, counts_value),
                ]
            )
            + struct.pack("<Q", 0)
        )
        header = b"II" + struct.pack("<HHHQ", 43, 8, 0, ifd_offset) + ifd
        if n > 1:
            import numpy as np  # here: a process that never bridges a level never imports numpy

            starts = self.data_start + np.arange(n, dtype="<u8") * np.uint64(self.tile_bytes)
            header += starts.astype("<u8").tobytes() + np.full(n, self.tile_bytes, "<u8").tobytes()
        return header.ljust(self.data_start, b"\0")

    def _on_seek(self, offset: int, whence: int) -> int:
        with self._lock:
            if whence == 0:
                self._pos = offset
            elif whence == 1:
                self._pos += offset
            else:
                self._pos = self.size + offset
            return self._pos

    def _tile_bytes(self, index: int) -> bytes:
        data = self._cache.get(index)
        if data is not None:
            self._cache.move_to_end(index)
            return data
        col, row = index % self.tiles_across, index // self.tiles_across
        x, y = col * self.tile, row * self.tile
        w, h = min(self.tile, self.width - x), min(self.tile, self.height - y)
        import numpy as np  # lazy: a JPEG or PNG, never bridged, must not pay for importing numpy

        pixels = np.asarray(self._read_tile(self._x_offset + x, y, w, h), dtype=np.uint8)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if pixels.shape != (h, w, self.bands):
            raise ValueError(f"tile reader returned shape {pixels.shape}, expected {(h, w, self.bands)}")
        if (w, h) != (self.tile, self.tile):
            padded = np.zeros((self.tile, self.tile, self.bands), np.uint8)
            padded[:h, :w] = pixels
            pixels = padded
        data = np.ascontiguousarray(pixels).tobytes()
        self._cache[index] = data
        if len(self._cache) > _CACHED_TILES:
            self._cache.popitem(last=False)
        return data

    def _on_read(self, buffer) -> int:
        """The source's 'read' signal: fill `buffer`, return the byte count, or -1 so libvips fails the read."""
        with self._lock:
            pos = self._pos
            if pos >= self.size:
                return 0
            if self.error is not None:
                return -1
            try:
                if pos < self.data_start:
                    out = self._header[pos : pos + len(buffer)]
                else:
                    index, within = divmod(pos - self.data_start, self.tile_bytes)
                    out = self._tile_bytes(index)[within : within + len(buffer)]
            except BaseException as exc:  # noqa: BLE001 - kept for the caller, who re-raises it with context
                self.error = exc
                return -1
            buffer[: len(out)] = out
            self._pos += len(out)
            return len(out)

    def image(self) -> pyvips.Image:
        return pyvips.Image.new_from_source(self.source, "", access="random", fail_on="error")


class BridgedLevel:
    """A whole level as one lazy pyvips image, made of vertical stripes of `VirtualTiff`."""

    def __init__(
        self, width: int, height: int, bands: int, read_tile: TileReader, tile: int = 256, stripes: int | None = None
    ) -> None:
        # libvips refuses a tile much larger than the image: shrink it to fit (TIFF wants multiples of 16)
        tile = min(tile, -(-max(width, height) // 16) * 16)
        tiles_across = -(-width // tile)
        if stripes is None:
            stripes = 4
        stripes = max(1, min(stripes, tiles_across))
        per = -(-tiles_across // stripes) * tile
        self.parts: list[VirtualTiff] = []
        for x0 in range(0, width, per):
            self.parts.append(VirtualTiff(min(per, width - x0), height, bands, tile, read_tile, x_offset=x0))
        images = [p.image() for p in self.parts]
        if len(images) == 1:
            self.image = images[0]
        else:  # arrayjoin pads every cell to the widest one: crop the narrower last stripe's padding away
            self.image = pyvips.Image.arrayjoin(images, across=len(images)).crop(0, 0, width, height)

    @property
    def error(self) -> BaseException | None:
        return next((p.error for p in self.parts if p.error is not None), None)
