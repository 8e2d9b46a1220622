"""Static IIIF Image API 3 (level 0): a folder to serve as it is at the image's `id`.

`OUT/info.json`, the tiles `OUT/{region}/{size}/0/default.jpg` (libvips' `iiif3` layout), the
whole-image sizes `OUT/full/{w},{h}/0/default.jpg` that info.json lists, and `OUT/full/max/0/default.jpg`
(level 0 requires `full/max`). The `id` is given (`--iiif-id`), or is the server's `/outputs/` URL of
an output under the output root (`served_id`): a static folder does not know where it will be served.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import HttpUrl, TypeAdapter, ValidationError

from tilewright.config import Settings
from tilewright.errors import InputError
from tilewright.outputs.base import Plan, PyramidWriter, pyramid_levels, tile_count, tile_suffix

if TYPE_CHECKING:  # annotations only: `outputs.KINDS` (the CLI's --to choices) is read without libvips
    import pyvips

MAX_SIDE = 4096
"""`full/max` is at most this many pixels a side (info.json then says so in `maxWidth`/`maxHeight`): a
slide at full resolution is past JPEG's 65535 pixels and gigabytes; a viewer's overview needs far less."""

_URL: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)


def check_id(value: str) -> str:
    """An image `id` as given, without a trailing slash; InputError unless it is an http(s) URL."""
    try:
        _URL.validate_python(value)
    except ValidationError:
        raise InputError(f"IIIF id must be an http(s) URL (where the output folder is served), not {value!r}") from None
    return value.rstrip("/")


def served_id(output: Path, settings: Settings) -> str:
    """The URL `tilewright serve` serves `output` at: `/outputs/` is the output root (server/app.py), under
    `TILEWRIGHT_PUBLIC_URL` when it is set.

    InputError for an output outside the output root: its URL is only known to whoever serves it.
    """
    root = settings.resolved_output_root()
    try:
        relative = output.resolve().relative_to(root)
    except ValueError:
        raise InputError(
            f"give the IIIF id (--iiif-id URL: where the output folder will be served), or write the output "
            f"under the output root {root} (served at /outputs/)",
            path=output,
        ) from None
    # the public base URL when one is set (a server behind a proxy, or listening on 0.0.0.0), else where it listens
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    return f"{base}/outputs/{relative.as_posix()}"


class IiifWriter(PyramidWriter):
    kind = "iiif"
    tile_size_setting = "iiif_tile_size"

    def final_paths(self) -> list[Path]:
        return [self.output]

    def _max_formats(self) -> list[str]:
        """`full/max` in JPEG (level 0 requires it) and in the tile format when that is another one."""
        return ["jpeg"] + ([self.options.tile_format] if self.options.tile_format != "jpeg" else [])

    def plan(self, width: int, height: int) -> Plan:
        ts = self.options.tile_size
        levels = pyramid_levels(width, height, stop=ts)  # the levels dzsave writes (ceil halving)
        tiles = tile_count(levels, ts) + len(self._max_formats())
        return Plan(self.kind, [self.output / "info.json"], levels, tiles)

    def write(self, image: pyvips.Image, staging: Path) -> list[Path]:
        o = self.options
        if not o.iiif_id:
            raise InputError("the IIIF id is needed (--iiif-id URL: where the output folder will be served)")
        base = staging / self.output.name
        suffix = tile_suffix(o.tile_format, o.quality, iiif=True)
        image.dzsave(
            str(base), layout="iiif3", tile_size=o.tile_size, overlap=0, suffix=suffix, id=o.iiif_id, keep="none"
        )
        info_path = base / "info.json"
        info = json.loads(info_path.read_text())
        info["id"] = o.iiif_id  # dzsave appends the folder's name to `id`: the id is the one given, exactly
        # dzsave writes whole-image renditions under full/{w},{h}/ but does not list them: a level-0
        # client only asks for sizes that info.json announces
        sizes = []
        for folder in sorted((base / "full").glob("*,*")):
            w, _, h = folder.name.partition(",")
            if w.isdigit() and h.isdigit():
                sizes.append({"width": int(w), "height": int(h)})
        if sizes:
            info["sizes"] = sorted(sizes, key=lambda size: size["width"])
        width, height = self._write_max(base, info, suffix)
        if (width, height) != (info["width"], info["height"]):
            info["maxWidth"], info["maxHeight"] = width, height  # what `max` means here
        if o.tile_format != "jpeg":
            info["extraFormats"] = info["preferredFormats"] = [o.tile_format]
        info_path.write_text(json.dumps(info, indent=2))
        return [base]

    def _write_max(self, base: Path, info: dict[str, Any], suffix: str) -> tuple[int, int]:
        """`full/max/0/default.*` from the largest written level within MAX_SIDE, stitched from its tiles
        (the source was read once, sequentially, by dzsave); returns its size."""
        import pyvips  # here: `outputs.KINDS` (the CLI's --to choices) is read without libvips

        o = self.options
        width, height = info["width"], info["height"]
        factors = info["tiles"][0]["scaleFactors"]
        fits = [f for f in factors if math.ceil(width / f) <= MAX_SIDE and math.ceil(height / f) <= MAX_SIDE]
        factor = fits[0] if fits else factors[-1]  # the last level is one tile: never larger than that
        step = o.tile_size * factor
        ext = suffix.partition("[")[0]
        tiles = []
        for y in range(0, height, step):
            for x in range(0, width, step):
                w, h = min(step, width - x), min(step, height - y)
                region = "full" if (w, h) == (width, height) else f"{x},{y},{w},{h}"
                size = f"{math.ceil(w / factor)},{math.ceil(h / factor)}"
                tiles.append(pyvips.Image.new_from_file(str(base / region / size / "0" / f"default{ext}")))
        across = math.ceil(width / step)
        level_w = math.ceil(width / factor)
        level_h = math.ceil(height / factor)
        # arrayjoin spaces cells by the largest tile: only the last column and row are smaller, so the
        # cells line up with the level and the padding beyond it is cropped off
        whole = pyvips.Image.arrayjoin(tiles, across=across).crop(0, 0, level_w, level_h)
        folder = base / "full" / "max" / "0"
        folder.mkdir(parents=True)
        for fmt in self._max_formats():
            out = whole.flatten(background=255) if fmt == "jpeg" and whole.hasalpha() else whole
            out.write_to_file(str(folder / "default") + tile_suffix(fmt, o.quality, iiif=True))
        return level_w, level_h
