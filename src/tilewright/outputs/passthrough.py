"""Pass-through: a pyramidal TIFF made of the source's own stored JPEG tiles, rendering only what is missing.

Most slides store each level as tiles of JPEG (Aperio SVS, libvips' and most scanners' pyramidal TIFFs).
Decoding them and encoding them again, as every libvips-based converter does, costs nearly all of a
conversion's time and adds a second generation of JPEG loss. Where an output level is exactly a stored
level (same size, the output's tile grid), its compressed tiles are copied byte for byte instead, with
the page's JPEGTables and its Photometric tag (Aperio's RGB-coded JPEG stays RGB; YCbCr stays YCbCr with
its subsampling), so that any reader decodes the output exactly as it decodes the source.

The output keeps the source's pyramid: every source level, copied where it can be and otherwise
rendered at its own size from that level; below the smallest source level, levels at the source's own
step (2x, or a scanner's 4x: one factor, so that tifffile reads one pyramid) down to one tile, rendered
from the smallest level (halving levels in one libvips pass). Rendered levels are written by libvips'
`tiffsave` into staging, streaming, and their tiles copied into the output like the stored ones: the
whole slide is never in memory. `plan_tiff` says, level by level, which path each takes and why;
`write_tiff` writes it.

Edge tiles: a TIFF stores whole tiles at the right and bottom edges too, padded past the image, and the
image size crops them (TIFF 6.0, section 15): so padded edge tiles are copied as they are, which is legal
and bit-exact. (A Deep Zoom or IIIF edge tile is a file of its own and must be cropped: rendered.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyvips

from tilewright.formats.base import SlideReader
from tilewright.formats.jpegtiles import JpegTiles, StoredLevel, refusal
from tilewright.formats.registry import is_tiff, read_head
from tilewright.outputs.base import WriteOptions

BELOW = "below the smallest source level"
_BIGTIFF_BYTES = 2**32 - 2**26  # past this, offsets need BigTIFF (a margin below 4 GiB for the IFDs)
_CHECK_EVERY = 256  # tiles copied between two cancel/time-limit checks


@dataclass
class LevelPath:
    """One output level: copied from a stored source level, or rendered (from `source`), and why."""

    level: int
    width: int
    height: int
    source: int  # the source level it is copied or rendered from
    copied: bool
    reason: str
    tiles: int

    @property
    def path(self) -> str:
        return "copy" if self.copied else "render"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, **asdict(self)}


@dataclass
class PassPlan:
    """The pass-through plan of a TIFF output, or why there is none (`applies` False: the plain path)."""

    applies: bool
    reason: str
    levels: list[LevelPath] = field(default_factory=list)
    tile_size: tuple[int, int] = (0, 0)
    factor: int = 2  # each level's downsample from the one before, below the source's levels

    @property
    def tiles_copied(self) -> int:
        return sum(level.tiles for level in self.levels if level.copied)

    @property
    def tiles_rendered(self) -> int:
        return sum(level.tiles for level in self.levels if not level.copied)

    def to_dict(self) -> dict[str, Any]:
        return {
            "applies": self.applies,
            "reason": self.reason,
            "tile_size": list(self.tile_size),
            "factor": self.factor,
            "levels": [level.to_dict() for level in self.levels],
        }


def _tiles(width: int, height: int, tile: tuple[int, int]) -> int:
    return -(-width // tile[0]) * -(-height // tile[1])


def plan_tiff(reader: SlideReader, options: WriteOptions) -> PassPlan:
    """Which levels of `reader` a TIFF output with `options` copies, which it renders, and why."""
    if not options.passthrough:
        return PassPlan(False, "--no-passthrough: every level is rendered")
    if options.tile_format != "jpeg":
        return PassPlan(False, f"{options.tile_format} tiles were asked for; the stored tiles are JPEG")
    stored = reader.jpeg_tiles.level(0) if reader.jpeg_tiles is not None else None
    if stored is None:
        return PassPlan(False, f"level 0 is not stored as JPEG tiles: {why_not_stored(reader)}")
    tile = (stored.tile_width, stored.tile_height)
    if options.tile_size_asked and (options.tile_size, options.tile_size) != tile:
        return PassPlan(
            False,
            f"tile size {options.tile_size} was asked for; the source stores {tile[0]} x {tile[1]} tiles "
            "(leave --tile-size out to copy them)",
        )
    factor = _step(reader)
    levels: list[LevelPath] = []

    def add(width: int, height: int, source: int, copied: bool, reason: str) -> None:
        levels.append(LevelPath(len(levels), width, height, source, copied, reason, _tiles(width, height, tile)))

    for index, level in enumerate(reader.levels):
        if options.base_only and index:
            break
        if levels and (level.width >= levels[-1].width or level.height >= levels[-1].height):
            continue  # not smaller than the level before: not part of the pyramid
        here = reader.jpeg_tiles.level(index) if reader.jpeg_tiles is not None else None
        if here is None:
            add(level.width, level.height, index, False, f"not stored as JPEG tiles: {why_not_stored(reader, index)}")
        elif (here.tile_width, here.tile_height) != tile:
            add(level.width, level.height, index, False, f"stored in {here.tile_width} x {here.tile_height} tiles")
        elif (here.width, here.height) != (level.width, level.height):
            add(level.width, level.height, index, False, "its stored size is not the level's")
        else:
            add(level.width, level.height, index, True, "stored JPEG tiles, copied as they are")
    smallest = levels[-1].source
    while not options.base_only and (levels[-1].width > tile[0] or levels[-1].height > tile[1]):
        last = levels[-1]
        add(max(1, last.width // factor), max(1, last.height // factor), smallest, False, BELOW)
    copied = sum(level.copied for level in levels)
    return PassPlan(True, f"{copied} of {len(levels)} levels copied as stored JPEG tiles", levels, tile, factor)


def _step(reader: SlideReader) -> int:
    """The source pyramid's step from one level to the next (2 when it has one level, as libvips makes):
    levels added below it keep that step, so that the output is one pyramid with one factor (tifffile
    reads a pyramid only so)."""
    if len(reader.levels) < 2:
        return 2
    step = round(reader.levels[0].width / reader.levels[1].width)
    return step if step in (2, 3, 4) else 2


def why_not_stored(reader: SlideReader, level: int = 0) -> str:
    """Why `level` of `reader` has no stored JPEG tiles to copy, in a few words."""
    path = reader.path
    try:
        if not path.is_file() or not is_tiff(read_head(path)):
            return f"the source is not a TIFF ({reader.format})"
    except OSError as exc:
        return f"cannot read the source: {exc.strerror}"
    import tifffile  # here: only a TIFF whose tiles cannot be copied is looked into again (numpy with it)

    size = (reader.levels[level].width, reader.levels[level].height)
    try:
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                if isinstance(page, tifffile.TiffPage) and (page.imagewidth, page.imagelength) == size:
                    return refusal(page) or f"the {reader.name} reader does not hand out {reader.format}'s stored tiles"
    except (tifffile.TiffFileError, OSError, ValueError) as exc:
        return f"tifffile cannot list it: {exc}"
    return "no TIFF page of that size (the reader makes the level)"


# -- writing -------------------------------------------------------------------------------------------------


@dataclass
class _Page:
    """An output page to assemble: its tiles (as stored) and the tags that say how to decode them."""

    width: int
    height: int
    file: JpegTiles  # the source's stored tiles, or a rendered level's file in staging
    level: int  # the level of `file`

    @property
    def stored(self) -> StoredLevel:
        found = self.file.level(self.level)
        assert found is not None
        return found

    def tiles(self) -> Iterator[bytes]:
        return self.file.raw_tiles(self.level)


def write_tiff(
    reader: SlideReader,
    plan: PassPlan,
    options: WriteOptions,
    target: Path,
    staging: Path,
    *,
    watch: Callable[[pyvips.Image, Callable[[float], None]], object],
    check: Callable[[], None],
    progress: Callable[[float], None],
) -> None:
    """Write `plan` to `target`: rendered levels first (libvips into `staging`), then every page's tiles.

    `watch(image, report)` follows a libvips write (cancel, time limit), `check()` raises when the work
    must stop, `progress(fraction)` is told 0..1.
    """
    import tifffile  # here: the DZI and IIIF paths never need it (numpy with it)

    assert reader.jpeg_tiles is not None
    source_tiles = reader.jpeg_tiles
    # rendering costs a decode and an encode a tile, copying a read and a write: weigh the progress by that
    weight = {True: 1.0, False: 20.0}
    total = sum(level.tiles * weight[level.copied] for level in plan.levels) or 1.0
    done = 0.0

    def advance(tiles: float) -> None:
        nonlocal done
        done += tiles
        progress(min(1.0, done / total))

    def rendering(start: float, share: float, fraction: float) -> None:
        progress(min(1.0, (start + share * fraction) / total))

    rendered: dict[int, _Page] = {}
    for group in _render_groups(plan):
        path = staging / f"level-{group[0].level}.tiff"
        image = _rendered_image(reader, group[0])
        share = sum(level.tiles for level in group) * (weight[False] - 1)
        start = done
        watch(image, functools.partial(rendering, start, share))
        image.tiffsave(
            str(path),
            tile=True,
            tile_width=plan.tile_size[0],
            tile_height=plan.tile_size[1],
            pyramid=len(group) > 1,  # halving levels below the smallest: one pass, libvips halves (floor) them
            compression="jpeg",
            Q=options.quality,
            bigtiff=image.width * image.height * 3 > 3 * 2**30,
            keep="none",
        )
        done = start + share
        with tifffile.TiffFile(path) as written:
            made = JpegTiles.from_pages(path, {n: page for n, page in enumerate(written.pages) if n < len(group)})
        for number, level in enumerate(group):
            stored = made.level(number) if made is not None else None
            if stored is None or (stored.width, stored.height) != (level.width, level.height):
                raise RuntimeError(
                    f"libvips made no JPEG page of {level.width} x {level.height} for level {level.level}"
                )
            assert made is not None
            rendered[level.level] = _Page(level.width, level.height, made, number)
    pages: list[_Page] = []
    for level in plan.levels:
        if level.copied:
            pages.append(_Page(level.width, level.height, source_tiles, level.source))
        else:
            pages.append(rendered[level.level])
    size = sum(sum(page.stored.counts) for page in pages)
    with tifffile.TiffWriter(target, bigtiff=size > _BIGTIFF_BYTES) as tif:
        for number, page in enumerate(pages):
            tif.write(
                _checked(page.tiles(), check, advance),
                shape=(page.height, page.width, 3),
                dtype="uint8",
                tile=(page.stored.tile_height, page.stored.tile_width),
                compression="jpeg",
                photometric=page.stored.photometric,
                subsampling=page.stored.subsampling,
                # tifffile writes Photometric=YCbCr for JPEG unless told the data's own: RGB-coded stays RGB
                compressionargs={"outcolorspace": page.stored.photometric},
                jpegtables=page.stored.jpegtables,
                subfiletype=1 if number else 0,  # reduced-resolution pages, as libvips writes them
                **_resolution(options, reader.width / page.width, reader.height / page.height),
                metadata=None,
                software="tilewright",
            )
    progress(1.0)


def _render_groups(plan: PassPlan) -> list[list[LevelPath]]:
    """Rendered levels in the libvips writes that make them: halving levels below the smallest source level
    together (one libvips pyramid), every other rendered level alone."""
    rendered = [level for level in plan.levels if not level.copied]
    below = [level for level in rendered if level.reason == BELOW] if plan.factor == 2 else []
    return [[level] for level in rendered if level not in below] + ([below] if below else [])


def _rendered_image(reader: SlideReader, level: LevelPath) -> pyvips.Image:
    """The pixels of a rendered output level, from its source level (read once, top to bottom)."""
    image = reader.level_image(level.source, sequential=True)
    if (image.width, image.height) == (level.width, level.height):
        return image
    factor = image.width // level.width
    if (level.width, level.height) == (image.width // factor, image.height // factor):
        # an integer step: means of factor x factor pixels, as libvips' own pyramid levels are made
        return image.shrink(factor, factor).crop(0, 0, level.width, level.height)
    resized = image.resize(level.width / image.width, vscale=level.height / image.height)
    return resized.crop(0, 0, min(level.width, resized.width), min(level.height, resized.height))


def _resolution(options: WriteOptions, downsample_x: float, downsample_y: float) -> dict[str, Any]:
    """The resolution tags of a level (pixels per centimetre, as the plain path writes them), when the source
    has a pixel size; none otherwise."""
    if not options.mpp:
        return {}
    return {
        "resolution": (1e4 / (options.mpp[0] * downsample_x), 1e4 / (options.mpp[1] * downsample_y)),
        "resolutionunit": "CENTIMETER",
    }


def _checked(tiles: Iterator[bytes], check: Callable[[], None], advance: Callable[[float], None]) -> Iterator[bytes]:
    """`tiles`, with a cancel/time-limit check and a progress report every `_CHECK_EVERY` of them."""
    for count, tile in enumerate(tiles, 1):
        if count % _CHECK_EVERY == 0:
            check()
            advance(_CHECK_EVERY)
        yield tile
