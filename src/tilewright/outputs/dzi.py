"""Deep Zoom (DZI): `OUT.dzi` + `OUT_files/{level}/{col}_{row}.{fmt}`, as OpenSeadragon reads it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tilewright.outputs.base import Plan, PyramidWriter, pyramid_levels, tile_count, tile_suffix

if TYPE_CHECKING:  # annotations only: `outputs.KINDS` (the CLI's --to choices) is read without libvips
    import pyvips


class DziWriter(PyramidWriter):
    kind = "dzi"
    tile_size_setting = "dzi_tile_size"

    @staticmethod
    def normalise_output(output: Path) -> Path:
        return output.with_suffix("") if output.suffix.lower() == ".dzi" else output

    def final_paths(self) -> list[Path]:
        base = self.output
        return [base.with_name(base.name + "_files"), base.with_name(base.name + ".dzi")]

    def plan(self, width: int, height: int) -> Plan:
        ts = self.options.tile_size
        levels = list(reversed(pyramid_levels(width, height)))  # Deep Zoom level 0 is 1x1
        tiles = tile_count(levels, ts)
        return Plan(self.kind, self.final_paths(), levels, tiles)

    def write(self, image: pyvips.Image, staging: Path) -> list[Path]:
        o = self.options
        base = staging / self.output.name
        image.dzsave(
            str(base),
            tile_size=o.tile_size,
            overlap=o.overlap,
            suffix=tile_suffix(o.tile_format, o.quality),
            keep="none",
            layout="dz",
        )
        return [base.with_name(base.name + "_files"), base.with_name(base.name + ".dzi")]
