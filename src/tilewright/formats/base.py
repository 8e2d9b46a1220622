"""The one reader interface every format implements (after large_image's tile sources).

A reader opens a file, describes its pyramid (`levels`, `tile_size`, `mpp`, ...),
and hands out lazy pyvips images: a whole level (`level_image`) for the writers,
a region, a tile or a thumbnail for the server. Callers never branch on format:
everything format-specific lives in a subclass, and what is common to all of them
(8-bit pixels through `imaging.eight_bit`, choosing the best level, limits, metadata) lives here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyvips

from tilewright.config import Settings, get_settings
from tilewright.errors import InputError, LimitExceededError, one_line
from tilewright.formats.bridge import BridgedLevel, TileReader
from tilewright.formats.jpegtiles import JpegTiles
from tilewright.imaging.colour import parse_colour
from tilewright.imaging.eight_bit import to_eight_bit

if TYPE_CHECKING:
    from tilewright.formats.registry import Probe


@dataclass(frozen=True)
class Level:
    width: int
    height: int
    downsample: float


@dataclass
class SlideInfo:
    """What `tilewright info` prints: the same keys for every format."""

    path: str
    format: str
    reader: str
    vendor: str | None
    width: int
    height: int
    bands: int
    levels: list[Level]
    tile_width: int
    tile_height: int
    tiled: bool
    mpp_x: float | None
    mpp_y: float | None
    objective_power: float | None
    associated_images: dict[str, tuple[int, int]]
    properties: dict[str, str] = field(default_factory=dict)

    def to_dict(self, *, with_properties: bool = True) -> dict[str, Any]:
        data = asdict(self)
        data["levels"] = [asdict(level) for level in self.levels]
        data["associated_images"] = {k: {"width": w, "height": h} for k, (w, h) in self.associated_images.items()}
        if not with_properties:
            data.pop("properties")
        return data


class SlideReader(ABC):
    """Base class of every format reader. Subclasses fill in the abstract parts.

    A subclass sets, in `__init__`: `format`, `vendor`, `levels`, `tile_size`,
    `tiled`, `mpp`, `objective_power`, `properties`, `associated_names`, `bands`.
    """

    #: the name used in `Settings.format_checkers` and in `info`'s "reader" field
    name: ClassVar[str] = ""
    #: file suffixes this reader's files usually have (lower case, with the dot): what uploads and
    #: `tilewright import` accept (`registry.accepted_suffixes`). Detection itself is by content.
    suffixes: ClassVar[tuple[str, ...]] = ()

    format: str
    vendor: str | None = None
    levels: list[Level]
    tile_size: tuple[int, int] = (256, 256)
    tiled: bool = True
    mpp: tuple[float, float] | None = None
    objective_power: float | None = None
    properties: dict[str, str]
    associated_names: list[str]
    bands: int = 3
    #: the stored JPEG tiles a server may hand out as they are (see jpegtiles.py); None: always render
    jpeg_tiles: JpegTiles | None = None

    def __init__(self, path: Path, settings: Settings | None = None) -> None:
        self.path = Path(path)
        self.settings = settings or get_settings()
        self.background = list(parse_colour(self.settings.background))
        self.properties = {}
        self.associated_names = []
        self._bridges: list[BridgedLevel] = []
        self._level_cache: dict[int, pyvips.Image] = {}

    # -- detection --------------------------------------------------------------
    @classmethod
    @abstractmethod
    def check(cls, path: Path, head: bytes) -> bool:
        """Cheap test of the content (`head` holds the first 4 KiB): can this reader open `path`?"""

    @classmethod
    def accepts(cls, probe: Probe) -> bool:
        """The registry's question: `check` on the probe's first bytes. A reader that parses the
        file to decide overrides this, to parse it through the probe (shared with the winner)."""
        return cls.check(probe.path, probe.head)

    @classmethod
    def from_probe(cls, probe: Probe, settings: Settings | None = None) -> SlideReader:
        """The registry's way to open the reader it chose. A reader that can reuse what the checkers
        parsed overrides this, to hand the probe to its constructor."""
        return cls(probe.path, settings)

    # -- pixels -----------------------------------------------------------------
    @abstractmethod
    def _level_image(self, level: int, sequential: bool) -> pyvips.Image:
        """The raw pixels of one level as a lazy pyvips image (any format, any band count)."""

    def associated(self, name: str) -> pyvips.Image:
        """An associated image (label, macro, thumbnail), normalised to 8-bit."""
        raise KeyError(name)

    def close(self) -> None:
        """Release file handles (subclasses call this after closing their own)."""
        if self.jpeg_tiles is not None:
            self.jpeg_tiles.close()

    def stored_jpeg_tile(self, level: int, col: int, row: int) -> bytes | None:
        """Tile (col, row) of `level` as stored in the file, when it is a JPEG safe to hand out; else None."""
        if self.jpeg_tiles is None:
            return None
        return self.jpeg_tiles.tile(level, col, row, self.level_image)

    def _bridged(self, width: int, height: int, bands: int, read_tile: TileReader) -> pyvips.Image:
        """A lazy level fed tile by tile by `read_tile` (see bridge.py); errors kept for `read_error`."""
        bridge = BridgedLevel(width, height, bands, read_tile)
        self._bridges.append(bridge)
        return bridge.image

    def read_error(self) -> BaseException | None:
        """The first exception a bridged tile read raised (libvips only sees a short read)."""
        return next((b.error for b in self._bridges if b.error is not None), None)

    def read_failure(self) -> InputError | None:
        """What to report when a bridged tile read failed but libvips carried on with what it had; else None."""
        cause = self.read_error()
        if cause is None:
            return None
        failure = InputError(f"cannot read pixels: {one_line(cause)}", path=self.path)
        failure.__cause__ = cause
        return failure

    # -- shared behaviour ---------------------------------------------------------
    @property
    def width(self) -> int:
        return self.levels[0].width

    @property
    def height(self) -> int:
        return self.levels[0].height

    def check_limits(self) -> None:
        """Refuse images over the configured pixel limits before any pixel is decoded."""
        pixels = self.width * self.height
        multi = self.tiled or len(self.levels) > 1
        limit = self.settings.max_slide_pixels if multi else self.settings.max_image_pixels
        name = "max_slide_pixels" if multi else "max_image_pixels"
        if pixels > limit:
            raise LimitExceededError(
                f"{self.width} x {self.height} = {pixels:,} pixels is over the limit of {limit:,} "
                f"(TILEWRIGHT_{name.upper()})",
                path=self.path,
            )
        if self.width < 1 or self.height < 1:
            raise InputError("image has no pixels", path=self.path)

    def level_image(self, level: int = 0, *, sequential: bool = False) -> pyvips.Image:
        """A whole level, lazily, as 8-bit sRGB (3 bands) or grey (1 band).

        `sequential=True` is a hint that the caller reads top to bottom once (the
        pyramid writers do); flat formats then decode in a single streaming pass.
        """
        if not 0 <= level < len(self.levels):
            raise IndexError(f"level {level} out of range 0..{len(self.levels) - 1}")
        if sequential:  # a writer's one pass: always a fresh image, so its progress handlers are its own
            return to_eight_bit(self._level_image(level, True), self.background)
        cached = self._level_cache.get(level)
        if cached is None:  # random access (tiles, regions): one lazy image per level, reused
            cached = self._level_cache[level] = to_eight_bit(self._level_image(level, False), self.background)
        return cached

    def best_level_for_downsample(self, downsample: float) -> int:
        """The smallest level that is still at least as detailed as `downsample` asks."""
        best = 0
        for index, level in enumerate(self.levels):
            if level.downsample <= downsample * 1.001:
                best = index
        return best

    def region(self, x: int, y: int, width: int, height: int, level: int = 0) -> pyvips.Image:
        """A `width` x `height` region of `level`, its top-left at (x, y) in level-0 pixels.

        The OpenSlide convention, so that callers can compare with `read_region`.
        Parts outside the image are filled with the background colour.
        """
        ds = self.levels[level].downsample
        image = self.level_image(level)
        lx, ly = int(round(x / ds)), int(round(y / ds))
        return image.embed(-lx, -ly, width, height, extend="background", background=self.background[: image.bands])

    def tile(self, level: int, col: int, row: int) -> pyvips.Image:
        """Tile (`col`, `row`) of `level` on the reader's native tile grid."""
        tw, th = self.tile_size
        lvl = self.levels[level]
        x, y = col * tw, row * th
        if not (0 <= x < lvl.width and 0 <= y < lvl.height):
            raise IndexError(f"tile ({col}, {row}) outside level {level}")
        return self.level_image(level).crop(x, y, min(tw, lvl.width - x), min(th, lvl.height - y))

    def thumbnail(self, size: int) -> pyvips.Image:
        """Fit inside `size` x `size`, read from the smallest level that is large enough."""
        downsample = max(self.width, self.height) / max(1, size)
        level = self.best_level_for_downsample(max(1.0, downsample))
        image = self.level_image(level)
        return image.thumbnail_image(size, height=size, size="down")

    def info(self) -> SlideInfo:
        associated = {}
        for name in self.associated_names:
            try:
                image = self.associated(name)
                associated[name] = (image.width, image.height)
            except Exception:  # noqa: BLE001 - an unreadable label must not hide the slide
                continue
        tw, th = self.tile_size
        return SlideInfo(
            path=str(self.path),
            format=self.format,
            reader=self.name,
            vendor=self.vendor,
            width=self.width,
            height=self.height,
            bands=self.bands,
            levels=list(self.levels),
            tile_width=tw,
            tile_height=th,
            tiled=self.tiled,
            mpp_x=self.mpp[0] if self.mpp else None,
            mpp_y=self.mpp[1] if self.mpp else None,
            objective_power=self.objective_power,
            associated_images=associated,
            properties=dict(self.properties),
        )

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pyramid_downsamples(base: tuple[int, int], sizes: list[tuple[int, int]]) -> list[float]:
    """Downsample of each level from its size, averaged over both axes (as OpenSlide does)."""
    bw, bh = base
    return [((bw / w) + (bh / h)) / 2 for w, h in sizes]
