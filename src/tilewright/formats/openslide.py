"""Whole-slide formats through OpenSlide: SVS, NDPI, MRXS, SCN, BIF, VMS/VMU, Philips TIFF, ...

OpenSlide (from the openslide-bin wheel) decodes what the pyvips-binary libvips
cannot (NDPI, MIRAX, JPEG 2000 SVS, ...). Pixels reach libvips through the lazy
bridge in `bridge.py`. Where a level is a plain tiled TIFF page that libvips
decodes itself (Aperio JPEG/LZW pages), `tiffload page=N` is used instead: it is
native, parallel and needs no Python in the loop.

Generic tiled TIFF is left to the vips reader (faster, same pixels) and DICOM to
the wsidicom reader.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import openslide
import pyvips
import tifffile

from tilewright.config import Settings
from tilewright.errors import InputError
from tilewright.formats.base import Level, SlideReader
from tilewright.formats.jpegtiles import JpegTiles
from tilewright.imaging.colour import parse_colour

log = logging.getLogger(__name__)

_LEFT_TO_OTHERS = {"generic-tiff", "dicom"}
# TIFF compressions the pyvips-binary libvips decodes (none, LZW, JPEG, deflate, zstd, webp)
_VIPS_TIFF_COMPRESSIONS = {1, 5, 7, 8, 32946, 50000, 50001}
_NATIVE_TIFF_VENDORS = {"aperio"}


class OpenSlideReader(SlideReader):
    name = "openslide"
    suffixes = (".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide", ".tif", ".tiff")

    @classmethod
    def check(cls, path: Path, head: bytes) -> bool:
        try:
            vendor = openslide.OpenSlide.detect_format(str(path))
        except Exception:  # noqa: BLE001 - detection must never raise
            return False
        return vendor is not None and vendor not in _LEFT_TO_OTHERS

    def __init__(self, path: Path, settings: Settings | None = None) -> None:
        super().__init__(path, settings)
        try:
            self._slide = openslide.OpenSlide(str(self.path))
        except (openslide.OpenSlideError, OSError) as exc:
            raise InputError(f"OpenSlide cannot open it: {exc}", path=self.path) from exc
        slide = self._slide
        props = dict(slide.properties)
        self.properties = props
        self.vendor = props.get(openslide.PROPERTY_NAME_VENDOR)
        self.format = self.vendor or "openslide"
        self.levels = [
            Level(w, h, float(d)) for (w, h), d in zip(slide.level_dimensions, slide.level_downsamples, strict=True)
        ]
        tw = int(props.get("openslide.level[0].tile-width", 256) or 256)
        th = int(props.get("openslide.level[0].tile-height", 256) or 256)
        self.tile_size = (tw, th)
        self.tiled = True
        self.associated_names = list(slide.associated_images.keys())
        try:
            self.mpp = (float(props["openslide.mpp-x"]), float(props["openslide.mpp-y"]))
        except (KeyError, ValueError):
            self.mpp = None
        try:
            self.objective_power = float(props["openslide.objective-power"])
        except (KeyError, ValueError):
            self.objective_power = None
        if openslide.PROPERTY_NAME_BACKGROUND_COLOR in props:
            self.background = list(parse_colour(props[openslide.PROPERTY_NAME_BACKGROUND_COLOR]))
        self._native_pages = self._find_native_pages()

    def _find_native_pages(self) -> dict[int, int]:
        """Levels that are plain tiled TIFF pages libvips decodes: level index -> page."""
        if self.vendor not in _NATIVE_TIFF_VENDORS:
            return {}
        found: dict[int, int] = {}
        try:
            with tifffile.TiffFile(self.path) as tif:
                keyframes = {}
                for index, page in enumerate(tif.pages):
                    if not isinstance(page, tifffile.TiffPage):  # frames share a keyframe: never a level of its own
                        continue
                    if not page.is_tiled or page.compression not in _VIPS_TIFF_COMPRESSIONS:
                        continue
                    for level, lvl in enumerate(self.levels):
                        if level not in found and (page.imagewidth, page.imagelength) == (lvl.width, lvl.height):
                            found[level] = index
                            keyframes[level] = page
                self.jpeg_tiles = JpegTiles.from_pages(self.path, keyframes)
        except Exception as exc:  # noqa: BLE001 - fall back to the bridge
            log.debug("no native pages for %s: %s", self.path, exc)
            return {}
        return found

    def _read_rgb(self, level: int):
        downsample = self.levels[level].downsample
        background = np.array(self.background, np.uint16)

        def read_tile(x: int, y: int, w: int, h: int) -> np.ndarray:
            location = (int(round(x * downsample)), int(round(y * downsample)))
            rgba = np.asarray(self._slide.read_region(location, level, (w, h)))
            if rgba[..., 3].min() == 255:  # fully scanned tile: nothing to flatten (most tiles of a slide)
                return rgba[..., :3]
            alpha = rgba[..., 3:4].astype(np.uint16)
            rgb = rgba[..., :3].astype(np.uint16)
            # OpenSlide returns un-premultiplied RGBA; transparent = outside the scanned area
            return ((rgb * alpha + background * (255 - alpha)) // 255).astype(np.uint8)

        return read_tile

    def _level_image(self, level: int, sequential: bool) -> pyvips.Image:
        page = self._native_pages.get(level)
        if page is not None:
            return pyvips.Image.tiffload(str(self.path), page=page, fail_on="error")
        lvl = self.levels[level]
        return self._bridged(lvl.width, lvl.height, 3, self._read_rgb(level))

    def associated(self, name: str) -> pyvips.Image:
        image = self._slide.associated_images[name]
        rgba = np.asarray(image.convert("RGBA"))
        return pyvips.Image.new_from_array(rgba, interpretation="srgb").flatten(background=self.background)

    def close(self) -> None:
        self._slide.close()
        super().close()
