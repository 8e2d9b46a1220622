"""Tiled pyramidal TIFF that OpenSlide ('generic-tiff'), tifffile and QuPath open.

Levels are written as pages of the main IFD chain (not SubIFDs: OpenSlide's generic
TIFF reader walks pages), halving down to one tile, with the resolution (from the
source's microns per pixel) so that QuPath knows the pixel size.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tilewright.outputs.base import Plan, PyramidWriter, pyramid_levels, tile_count

if TYPE_CHECKING:  # annotations only: `outputs.KINDS` (the CLI's --to choices) is read without libvips
    import pyvips

_COMPRESSION = {"jpeg": "jpeg", "png": "deflate", "webp": "webp"}
_BIGTIFF_BYTES = 3 * 2**30


class TiffWriter(PyramidWriter):
    kind = "tiff"
    tile_size_setting = "tiff_tile_size"

    @staticmethod
    def normalise_output(output: Path) -> Path:
        return output if output.suffix.lower() in (".tif", ".tiff") else output.with_name(output.name + ".tiff")

    def final_paths(self) -> list[Path]:
        return [self.output]

    def plan(self, width: int, height: int) -> Plan:
        ts = self.options.tile_size
        levels = [(width, height)] if self.options.base_only else pyramid_levels(width, height, stop=ts, round_up=False)
        tiles = tile_count(levels, ts)
        return Plan(self.kind, [self.output], levels, tiles)

    def write(self, image: pyvips.Image, staging: Path) -> list[Path]:
        o = self.options
        target = staging / self.output.name
        kwargs: dict[str, Any] = {}
        if o.mpp:
            kwargs.update(xres=1000.0 / o.mpp[0], yres=1000.0 / o.mpp[1], resunit="cm")
        compression = _COMPRESSION[o.tile_format]
        if compression in ("jpeg", "webp"):
            kwargs["Q"] = o.quality
        image.tiffsave(
            str(target),
            tile=True,
            tile_width=o.tile_size,
            tile_height=o.tile_size,
            pyramid=not o.base_only,
            compression=compression,
            bigtiff=image.width * image.height * image.bands > _BIGTIFF_BYTES,
            keep="none",
            **kwargs,
        )
        return [target]
