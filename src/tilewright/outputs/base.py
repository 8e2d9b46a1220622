"""What every pyramid writer shares: options, the plan, and atomic publishing.

A writer never writes at its final path. It writes into a private staging folder
beside the output (same filesystem, so the final step is a `rename`), and only
when libvips has finished does `publish` move the result into place, the file a
reader looks for first (`.dzi`, `info.json`'s folder, the `.tiff`) last. A failed,
killed or interrupted run leaves at most a hidden staging folder, which the next
run removes; never a half pyramid at the output path.
"""

from __future__ import annotations

import os
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from tilewright.errors import OutputExistsError
from tilewright.staging import STAGING_PREFIX, make_staging, remove_staging

if TYPE_CHECKING:  # annotations only: `outputs.KINDS` (the CLI's --to choices) is read without libvips
    import pyvips


@dataclass
class WriteOptions:
    tile_size: int
    overlap: int = 0
    tile_format: str = "jpeg"  # jpeg | png | webp
    quality: int = 85
    base_only: bool = False
    overwrite: bool = False
    iiif_id: str | None = None  # IIIF: the image's `id`, the URL the output folder is served at
    mpp: tuple[float, float] | None = None
    #: copy the source's stored tiles where the output can take them (outputs/passthrough.py)
    passthrough: bool = True
    #: the tile size was asked for (else the source's own tile size may be used, to copy its tiles)
    tile_size_asked: bool = False


@dataclass
class Plan:
    """What a conversion will write: shown by --dry-run, used for the summary."""

    kind: str
    paths: list[Path]
    levels: list[tuple[int, int]]
    tiles: int


class PyramidWriter(ABC):
    """One output kind (dzi, tiff, iiif). A new kind is one file plus a line in `outputs/__init__.py`."""

    kind: str = ""
    #: the `Settings` field giving this kind's default tile size
    tile_size_setting: ClassVar[str] = ""

    def __init__(self, output: Path, options: WriteOptions) -> None:
        self.output = self.normalise_output(Path(output))
        self.options = options

    @staticmethod
    def normalise_output(output: Path) -> Path:
        return output

    @abstractmethod
    def final_paths(self) -> list[Path]:
        """Everything the published output consists of, the marker (written last) at the end."""

    @abstractmethod
    def plan(self, width: int, height: int) -> Plan:
        """Levels and tile counts for an image of this size, without writing anything."""

    @abstractmethod
    def write(self, image: pyvips.Image, staging: Path) -> list[Path]:
        """Write the output under `staging`; return the staged paths in the order of `final_paths`."""

    # -- shared ---------------------------------------------------------------------
    def exists(self) -> bool:
        return any(p.exists() for p in self.final_paths())

    def check_output(self) -> None:
        if self.exists() and not self.options.overwrite:
            raise OutputExistsError("output exists; pass --overwrite to replace it", path=self.final_paths()[-1])
        parent = self.output.parent
        if parent.exists() and not parent.is_dir():
            raise OutputExistsError("output's parent is not a folder", path=parent)

    def staging_dir(self) -> Path:
        return make_staging(self.output.parent, self.output.name)

    def publish(self, staged: list[Path]) -> None:
        """Move staged paths into place; old outputs (with --overwrite) go only once the new ones are ready."""
        finals = self.final_paths()
        trash = []
        for final in reversed(finals):  # marker first: the old output stops looking finished at once
            if final.exists():
                moved = final.with_name(f"{STAGING_PREFIX}old-{uuid.uuid4().hex[:8]}-{final.name}")
                os.replace(final, moved)
                trash.append(moved)
        for src, final in zip(
            staged, finals, strict=True
        ):  # marker last: the new output looks finished only when whole
            os.replace(src, final)
        for old in trash:
            remove_staging(old)


def tile_suffix(fmt: str, quality: int, *, iiif: bool = False) -> str:
    """The dzsave `suffix`: extension plus save options."""
    if fmt == "jpeg":
        return f".{'jpg' if iiif else 'jpeg'}[Q={quality},optimize_coding]"
    if fmt == "webp":
        return f".webp[Q={quality}]"
    if fmt == "png":
        return ".png[compression=6]"
    raise ValueError(f"tile format must be jpeg, png or webp, not {fmt!r}")


def tile_count(levels: list[tuple[int, int]], tile: int) -> int:
    """Tiles of `tile` x `tile` pixels covering every level."""
    return sum(-(-w // tile) * -(-h // tile) for w, h in levels)


def pyramid_levels(width: int, height: int, stop: int = 1, *, round_up: bool = True) -> list[tuple[int, int]]:
    """Halving sizes from full size down until both sides are <= `stop`.

    Deep Zoom rounds up (its spec: ceil); libvips' TIFF pyramid rounds down.
    """
    levels = [(width, height)]
    w, h = width, height
    while max(w, h) > stop:
        w, h = (max(1, -(-w // 2)), max(1, -(-h // 2))) if round_up else (max(1, w // 2), max(1, h // 2))
        levels.append((w, h))
    return levels
