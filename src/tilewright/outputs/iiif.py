"""Static IIIF Image API 3 tiles (level 0): `OUT/info.json` + `OUT/{region}/{size}/0/default.jpg`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from tilewright.outputs.base import Plan, PyramidWriter, pyramid_levels, tile_count, tile_suffix

if TYPE_CHECKING:  # annotations only: `outputs.KINDS` (the CLI's --to choices) is read without libvips
    import pyvips


class IiifWriter(PyramidWriter):
    kind = "iiif"
    tile_size_setting = "iiif_tile_size"

    def final_paths(self) -> list[Path]:
        return [self.output]

    def plan(self, width: int, height: int) -> Plan:
        ts = self.options.tile_size
        levels = pyramid_levels(width, height, stop=ts)
        tiles = tile_count(levels, ts) + 1  # + the 'full/max' image
        return Plan(self.kind, [self.output / "info.json"], levels, tiles)

    def write(self, image: pyvips.Image, staging: Path) -> list[Path]:
        o = self.options
        base = staging / self.output.name
        image.dzsave(
            str(base),
            layout="iiif3",
            tile_size=o.tile_size,
            overlap=0,
            suffix=tile_suffix(o.tile_format, o.quality, iiif=True),
            id=o.iiif_id.rstrip("/"),
            keep="none",
        )
        info_path = base / "info.json"
        info = json.loads(info_path.read_text())
        # dzsave writes whole-image renditions under full/{w},{h}/ but does not list them: a level-0
        # client only asks for sizes that info.json announces
        sizes = []
        for folder in sorted((base / "full").glob("*,*")):
            w, _, h = folder.name.partition(",")
            if w.isdigit() and h.isdigit():
                sizes.append({"width": int(w), "height": int(h)})
        if sizes:
            info["sizes"] = sorted(sizes, key=lambda size: size["width"])
        if o.tile_format != "jpeg":
            info["extraFormats"] = info["preferredFormats"] = [o.tile_format]
        info_path.write_text(json.dumps(info, indent=2))
        return [base]
