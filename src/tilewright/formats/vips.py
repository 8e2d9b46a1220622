"""Images libvips reads natively: JPEG, PNG, WebP, GIF, HEIF/AVIF, and TIFF (flat or pyramidal).

libvips decodes these lazily and in parallel, so this is the fastest path; it is
tried after the slide readers, which claim the vendor formats first. For TIFF,
tifffile lists the pyramid (pages or SubIFDs) and libvips reads each level with
`page=` / `subifd=`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyvips

from tilewright.config import Settings
from tilewright.errors import InputError, UnsupportedFormatError, vips_reason
from tilewright.formats.base import Level, SlideReader, pyramid_downsamples
from tilewright.formats.jpegtiles import JpegTiles
from tilewright.formats.registry import Probe

log = logging.getLogger(__name__)

# loaders that would "read" almost anything (text, raw matrices) and must not claim a file
_REFUSED_LOADERS = ("Csv", "Matrix", "Raw", "Vips", "Fits", "Analyze")


def _loader_name(path: Path) -> str | None:
    """libvips' own sniffing of the file's first bytes: 'VipsForeignLoadJpegFile', or None."""
    pointer = pyvips.vips_lib.vips_foreign_find_load(str(path).encode())
    if pointer == pyvips.ffi.NULL:
        pyvips.vips_lib.vips_error_clear()
        return None
    return pyvips.ffi.string(pointer).decode()


class VipsReader(SlideReader):
    name = "vips"
    suffixes = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".heic", ".heif", ".avif", ".jp2", ".tif", ".tiff", ".qptiff")

    @classmethod
    def check(cls, path: Path, head: bytes) -> bool:
        loader = (_loader_name(path) or "").replace("VipsForeignLoad", "")
        return bool(loader) and not loader.startswith(_REFUSED_LOADERS)

    @classmethod
    def from_probe(cls, probe: Probe, settings: Settings | None = None) -> VipsReader:
        return cls(probe.path, settings, probe=probe)

    def __init__(self, path: Path, settings: Settings | None = None, probe: Probe | None = None) -> None:
        """`probe`: the detection's, whose tifffile parse a TIFF's pyramid is listed from (else it is parsed here)."""
        super().__init__(path, settings)
        loader = _loader_name(self.path) or ""
        # 'VipsForeignLoadJpegFile' -> 'jpeg'
        self.format = loader.replace("VipsForeignLoad", "").replace("File", "").lower() or "unknown"
        if self.format.startswith("tiff"):
            self.format = "tiff"
        try:
            header = pyvips.Image.new_from_file(str(self.path), fail_on="error")
        except pyvips.Error as exc:
            raise InputError(vips_reason(exc, fallback=_UNDECODABLE), path=self.path) from exc
        self.header = header  # the file's libvips header (no pixels): `ops.Source.header` hands it out
        self.bands = header.bands
        self._pages: list[dict] = [{}]
        sizes = [(header.width, header.height)]
        self.tiled = False
        self.tile_size = (min(256, header.width), min(256, header.height))
        if self.format == "tiff":
            sizes = self._scan_tiff(sizes, probe if probe is not None else Probe(self.path))
        self.levels = [Level(w, h, d) for (w, h), d in zip(sizes, pyramid_downsamples(sizes[0], sizes), strict=True)]
        self.properties = _vips_properties(header)
        self.mpp = _mpp_from_resolution(header)

    def _scan_tiff(self, sizes: list[tuple[int, int]], probe: Probe) -> list[tuple[int, int]]:
        """Find the pyramid with tifffile: pages or SubIFDs of the first series. Closes `probe`."""
        try:
            with probe:
                tif = probe.tiff()
                series = tif.series[0]
                page = series.levels[0].keyframe
                self.tiled = bool(page.is_tiled)
                if page.is_tiled:
                    self.tile_size = (page.tilewidth, page.tilelength)
                pages, level_sizes, keyframes = [], [], {}
                for number, level in enumerate(series.levels):
                    key = level.keyframe
                    keyframes[number] = key
                    index = key.index
                    if isinstance(index, tuple):  # (page, subifd)
                        pages.append({"page": index[0], "subifd": index[1] - 1 if len(index) > 1 else -1})
                    else:
                        pages.append({"page": index})
                    level_sizes.append((key.imagewidth, key.imagelength))
                jpeg_tiles = JpegTiles.from_pages(self.path, keyframes)
        except Exception as exc:  # noqa: BLE001 - tifffile is only our guide; libvips decides
            log.debug("tifffile could not list %s: %s", self.path, exc)
            return sizes
        if level_sizes and level_sizes[0] == sizes[0]:
            self._pages = pages
            self.jpeg_tiles = jpeg_tiles
            return level_sizes
        return sizes

    def _level_image(self, level: int, sequential: bool) -> pyvips.Image:
        options = dict(self._pages[level]) if self.format == "tiff" else {}
        if sequential and not self.tiled:
            options["access"] = "sequential"
        try:
            return pyvips.Image.new_from_file(str(self.path), fail_on="error", **options)
        except pyvips.Error as exc:
            raise InputError(vips_reason(exc, fallback=_UNDECODABLE), path=self.path) from exc


_UNDECODABLE = "libvips cannot decode it: the file is damaged or not what its header says"


def _vips_properties(image: pyvips.Image) -> dict[str, str]:
    props = {}
    for name in image.get_fields():
        if name.endswith("-data") or name in ("icc-profile-data", "xmp-data", "iptc-data", "exif-data"):
            continue
        try:
            value = image.get(name)
        except pyvips.Error:
            continue
        if isinstance(value, (bytes, bytearray, list, pyvips.Image)):
            continue
        props[f"vips.{name}"] = str(value)
    return props


def _mpp_from_resolution(image: pyvips.Image) -> tuple[float, float] | None:
    """Microns per pixel from the file's resolution, when the file really states one.

    libvips reports pixels per millimetre and defaults to 72 dpi (2.83 px/mm) when
    nothing is set; anything under 10 px/mm (100 um/px) is no microscope.
    """
    fields = image.get_fields()
    if "resolution-unit" not in fields:
        return None
    xres, yres = image.xres, image.yres
    if xres < 10 or yres < 10:
        return None
    return (1000.0 / xres, 1000.0 / yres)


__all__ = ["VipsReader", "UnsupportedFormatError"]
