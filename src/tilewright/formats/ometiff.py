"""OME-TIFF (pyramidal through SubIFDs, or a single level) through tifffile.

This reader also takes plain TIFFs whose compression the libvips wheel decodes wrongly or not at
all (ZSTD tiles come out black, JPEG 2000 fails): tifffile decodes those with imagecodecs.

tifffile understands OME's axes (T, C, Z, S), SubIFD pyramids and codecs the
libvips wheel lacks; regions are read through its zarr store, so only the tiles
(or strips) a request touches are decoded. Time points and focal planes other than
the first are not shown; of more than three channels the first three are.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import cast

import numpy as np
import pyvips
import tifffile

from tilewright.config import Settings
from tilewright.errors import InputError
from tilewright.formats.base import Level, SlideReader, pyramid_downsamples
from tilewright.formats.registry import Probe, is_tiff

log = logging.getLogger(__name__)

# TIFF compressions the pyvips-binary libvips gets wrong: ZSTD (decodes as zeros, measured on
# generic-tiff/yb10kx5k.zstd.tiff), JPEG 2000 (no decoder), JPEG XL, LERC
_VIPS_CANNOT_DECODE = {50000, 34712, 33003, 33004, 33005, 50002, 52546, 34887}


class OmeTiffReader(SlideReader):
    name = "ometiff"
    suffixes = (".tif", ".tiff", ".btf")

    @classmethod
    def check(cls, path: Path, head: bytes) -> bool:
        with Probe(path, head) as probe:
            return cls.accepts(probe)

    @classmethod
    def accepts(cls, probe: Probe) -> bool:
        if not is_tiff(probe.head):
            return False
        try:
            tif = probe.tiff()
            return bool(tif.is_ome) or int(tif.pages[0].compression) in _VIPS_CANNOT_DECODE
        except Exception:  # noqa: BLE001
            return False

    @classmethod
    def from_probe(cls, probe: Probe, settings: Settings | None = None) -> OmeTiffReader:
        return cls(probe.path, settings, probe=probe)

    def __init__(self, path: Path, settings: Settings | None = None, probe: Probe | None = None) -> None:
        """`probe`: the detection's, whose tifffile handle this reader takes (else the file is opened here)."""
        super().__init__(path, settings)
        with probe if probe is not None else Probe(self.path) as probe:
            try:
                tif = probe.tiff()
                series = tif.series[0]
            except Exception as exc:
                raise InputError(f"not a readable OME-TIFF: {exc}", path=self.path) from exc
            self._describe(tif, series)
            self._tif = probe.take_tiff()

    def _describe(self, tif: tifffile.TiffFile, series: tifffile.TiffPageSeries) -> None:
        """Levels, tiles, bands and metadata from the first series; the stores that read its pixels."""
        self.format = "ome-tiff" if tif.is_ome else "tiff"
        self._axes = series.axes
        self._dtype = np.dtype(series.dtype)
        keyframes = [level.keyframe for level in series.levels]
        y_axis, x_axis = self._axes.index("Y"), self._axes.index("X")
        sizes = [(level.shape[x_axis], level.shape[y_axis]) for level in series.levels]
        self.levels = [Level(w, h, d) for (w, h), d in zip(sizes, pyramid_downsamples(sizes[0], sizes), strict=True)]
        key = keyframes[0]
        self.tiled = bool(key.is_tiled)
        self.tile_size = (
            (key.tilewidth, key.tilelength) if key.is_tiled else (min(512, sizes[0][0]), min(512, sizes[0][1]))
        )
        channels = 1
        for axis in "CS":
            if axis in self._axes:
                channels *= series.shape[self._axes.index(axis)]
        self.bands = 3 if channels >= 3 else 1
        self.properties = {
            "ome.axes": self._axes,
            "ome.dtype": str(self._dtype),
            "ome.shape": "x".join(map(str, series.shape)),
        }
        self.mpp = _ome_mpp(tif)
        import zarr  # imported here: only OME-TIFF needs it, and it is slow to import

        # each level's store holds one array (zarr.open's type says "array or group")
        self._stores = [
            cast(zarr.Array, zarr.open(series.aszarr(level=i), mode="r")) for i in range(len(series.levels))
        ]
        self._range = self._value_range()

    def _value_range(self) -> tuple[float, float]:
        """Integer images deeper than 8 bits are scaled by the range of the smallest level."""
        if self._dtype == np.uint8:
            return (0.0, 255.0)
        smallest = np.asarray(self._stores[-1][...])
        lo, hi = float(smallest.min()), float(smallest.max())
        return (lo, hi if hi > lo else lo + 1)

    def _read(self, level: int):
        store = self._stores[level]
        axes = self._axes
        lo, hi = self._range
        bands = self.bands

        def read_tile(x: int, y: int, w: int, h: int) -> np.ndarray:
            index = []
            for axis in axes:
                index.append(
                    slice(y, y + h)
                    if axis == "Y"
                    else slice(x, x + w)
                    if axis == "X"
                    else slice(None)
                    if axis in "CS"
                    else 0
                )
            block = np.asarray(store[tuple(index)])
            kept = [a for a in axes if a in "YXCS"]
            # move to (Y, X, channels...)
            order = [kept.index("Y"), kept.index("X")] + [i for i, a in enumerate(kept) if a in "CS"]
            block = np.transpose(block, order).reshape(h, w, -1)
            block = block[:, :, :3] if bands == 3 else block[:, :, :1]
            if block.dtype != np.uint8:
                block = np.clip((block.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
            return block

        return read_tile

    def _level_image(self, level: int, sequential: bool) -> pyvips.Image:
        lvl = self.levels[level]
        return self._bridged(lvl.width, lvl.height, self.bands, self._read(level))

    def close(self) -> None:
        self._tif.close()


def _ome_mpp(tif: tifffile.TiffFile) -> tuple[float, float] | None:
    if not tif.ome_metadata:
        return None
    try:
        root = ET.fromstring(tif.ome_metadata)
        pixels = next(el for el in root.iter() if el.tag.endswith("Pixels"))
        x, y = pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeY")
        unit = pixels.get("PhysicalSizeXUnit", "µm")
        if x is None or y is None:
            return None
        factor = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3}.get(unit)
        return None if factor is None else (float(x) * factor, float(y) * factor)
    except Exception:  # noqa: BLE001
        return None
