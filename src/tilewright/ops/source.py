"""Opening a file for a chain: limits first, then the cheapest way to the pixels the chain needs.

A chain that starts with `thumbnail` never decodes the full image: plain files use
libvips' shrink-on-load (`pyvips.Image.thumbnail`), slides read the smallest pyramid
level that is still large enough. Anything else streams the full image, top to
bottom when the chain allows it (`access="sequential"`), so memory stays flat.

A format with no shrink-on-load (PNG, GIF, flat TIFF, ...) is decoded whole by every
output made from it. `Source.decode_to(path)` decodes it once into an uncompressed
libvips file (`.v`, mapped, random access); every later `full`/`thumbnail` reads that
instead, with exactly the same pixels and metadata. The recipe runner does this when
a recipe needs more full decodes than it runs at once (see `recipes/plan.py`).

Pixels come out 8-bit with their alpha (`imaging.eight_bit`); slides through their reader, which
flattens it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyvips

from tilewright.config import Settings, get_settings
from tilewright.errors import InputError, vips_reason
from tilewright.formats import SlideReader, open_slide
from tilewright.formats.vips import VipsReader
from tilewright.imaging.eight_bit import to_eight_bit
from tilewright.ops.base import Step
from tilewright.ops.geometry import fit_size
from tilewright.ops.registry import needs_random_access

#: libvips loaders (`VipsReader.format`) that decode a smaller image directly: JPEG at 1/2..1/8,
#: WebP, HEIF/AVIF, SVG and PDF at any scale. Every other flat format is decoded whole, even for a thumbnail.
SHRINK_ON_LOAD = frozenset({"jpeg", "webp", "heif", "svg", "pdf", "pdfium"})
UNDECODABLE = "libvips cannot decode it"  # what a libvips error without a useful line becomes


@dataclass(frozen=True)
class LeadThumbnail:
    """A chain's leading `thumbnail` step, which `Source.thumbnail` does on load instead of after a full decode.

    Only a thumbnail that is the chain's first step, or comes right after a first `auto_orient`, qualifies:
    nothing before it needs the full-size pixels.
    """

    width: int
    height: int
    orient: bool  # an auto_orient comes first: the thumbnail is of the upright image
    rest: list[Step]  # the steps after the thumbnail


def lead_thumbnail(steps: Sequence[Step]) -> LeadThumbnail | None:
    """The chain's leading thumbnail, or None when the chain has none."""
    orient = bool(steps) and steps[0].op == "auto_orient"
    index = 1 if orient else 0
    if len(steps) <= index or steps[index].op != "thumbnail":
        return None
    params = steps[index].params
    return LeadThumbnail(params["width"], params.get("height") or params["width"], orient, list(steps[index + 1 :]))


class Source:
    """One opened input: its reader (limits already checked) and how to load it for a chain."""

    def __init__(self, path: str | Path, settings: Settings | None = None) -> None:
        self.path = Path(path)
        self.settings = settings or get_settings()
        self.reader: SlideReader = open_slide(self.path, self.settings)
        self._decoded: pyvips.Image | None = None  # the decode-once copy, see `decode_to`

    @property
    def shrinks_on_load(self) -> bool:
        """Whether a thumbnail reads fewer pixels than the full image: pyramids and JPEG-like formats."""
        return self.is_slide or self.reader.format in SHRINK_ON_LOAD

    @property
    def decoded(self) -> bool:
        return self._decoded is not None

    def decode_to(self, path: str | Path, watch: Callable[[pyvips.Image], Any] | None = None) -> None:
        """Decode a flat image once into the uncompressed libvips file `path`; read it from there on.

        The copy keeps the loader's pixels and metadata unchanged (normalising happens on
        each read, as for the file), so outputs are identical either way. `watch(image)` is
        called with the image being written (progress, cancellation). The caller deletes
        `path` after `release_decoded()`. pyvips errors (a damaged file, a full disk) propagate,
        and leave no partial file behind.
        """
        if self.is_slide:
            raise ValueError("slides are read from their pyramid, never decoded whole")
        path = Path(path)
        image = pyvips.Image.new_from_file(str(self.path), access="sequential", fail_on="error")
        fields = set(image.get_fields())
        if watch is not None:
            watch(image)
        try:
            image.write_to_file(str(path))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        copy = pyvips.Image.new_from_file(str(path)).copy()
        for name in copy.get_fields():  # writing a .v adds (or refreshes) an EXIF block: undo that
            if name not in fields:
                copy.remove(name)
        if "exif-data" in fields:
            copy.set_type(pyvips.GValue.blob_type, "exif-data", image.get("exif-data"))
        self._decoded = copy

    def release_decoded(self) -> None:
        """Forget the decode-once copy (its file can then be deleted); reads go to the file again."""
        self._decoded = None

    @property
    def is_slide(self) -> bool:
        """Tiled or multi-level, or read by a slide reader: never decoded whole."""
        reader = self.reader
        return reader.name != "vips" or reader.tiled or len(reader.levels) > 1

    @property
    def width(self) -> int:
        return self.reader.width

    @property
    def height(self) -> int:
        return self.reader.height

    def header(self) -> pyvips.Image | None:
        """The plain file's libvips header (no pixels decoded), for mode and format; None for slides.

        The one the vips reader opened (a recipe run asks for it for each upright thumbnail's size,
        for its decode-once plan and for its metadata).
        """
        reader = self.reader
        return reader.header if isinstance(reader, VipsReader) and not self.is_slide else None

    def load(self, steps: list[Step]) -> tuple[pyvips.Image, list[Step]]:
        """The image to run `steps` on, and the steps still to run (a leading thumbnail is done on load)."""
        lead = lead_thumbnail(steps)
        if lead is not None:
            return self.thumbnail(lead.width, lead.height, orient=lead.orient), lead.rest
        return self.full(sequential=not needs_random_access(steps)), steps

    def oriented_size(self, orient: bool) -> tuple[int, int]:
        """The source's size, turned upright when `orient` and its EXIF orientation says 90 or 270 degrees."""
        width, height = self.width, self.height
        if orient and not self.is_slide:
            header = self.header()
            if header is not None and "orientation" in header.get_fields() and header.get("orientation") >= 5:
                width, height = height, width
        return width, height

    def thumbnail_size(self, width: int, height: int, *, orient: bool = False) -> tuple[int, int]:
        """The size `thumbnail(width, height, orient=orient)` makes: the (upright) source fitted, never enlarged."""
        return fit_size(*self.oriented_size(orient), width, height)

    def thumbnail(self, width: int, height: int, *, orient: bool = False) -> pyvips.Image:
        """Fit inside width x height, never enlarged, reading as few pixels as the format allows.

        The size is exactly `thumbnail_size`, however it is read.
        """
        target_w, target_h = self.thumbnail_size(width, height, orient=orient)
        if self.is_slide:
            reader = self.reader
            if width == height:
                image = reader.thumbnail(max(target_w, target_h))
            else:
                factor = max(reader.width / target_w, reader.height / target_h)
                image = reader.level_image(reader.best_level_for_downsample(max(1.0, factor)))
            if orient:
                image = image.autorot()
            if (image.width, image.height) != (target_w, target_h):
                image = image.thumbnail_image(target_w, height=target_h, size="force")
            return image
        try:
            if self._decoded is not None:
                image = self._decoded.thumbnail_image(target_w, height=target_h, size="force", no_rotate=not orient)
            else:
                image = pyvips.Image.thumbnail(
                    str(self.path), target_w, height=target_h, size="force", no_rotate=not orient, fail_on="error"
                )
        except pyvips.Error as exc:
            raise InputError(vips_reason(exc, fallback=UNDECODABLE), path=self.path) from exc
        return to_eight_bit(image)

    def full(self, *, sequential: bool = True) -> pyvips.Image:
        """The whole image, lazily; streamed top to bottom once when `sequential`."""
        if self.is_slide:
            return self.reader.level_image(0, sequential=sequential)
        if self._decoded is not None:  # mapped: any access pattern, from any number of threads
            return to_eight_bit(self._decoded)
        try:
            image = pyvips.Image.new_from_file(
                str(self.path), access="sequential" if sequential else "random", fail_on="error"
            )
        except pyvips.Error as exc:
            raise InputError(vips_reason(exc, fallback=UNDECODABLE), path=self.path) from exc
        return to_eight_bit(image)

    def close(self) -> None:
        self._decoded = None
        self.reader.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["SHRINK_ON_LOAD", "UNDECODABLE", "LeadThumbnail", "Source", "lead_thumbnail"]
