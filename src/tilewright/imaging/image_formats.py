"""The image formats tilewright encodes (the `format` operation, recipes, `/process`): one type, one table.

Pure Python (no pyvips), so that the command line, the job checks and the server can name and check
formats without loading libvips. The encoder (`ops/encode.py`) adds how to write each one. A new
format is one more name in `ImageFormat` and one row in `FORMATS` (plus its saver in `ops/encode.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

#: a format the encoders write, by its canonical name
ImageFormat = Literal["jpeg", "png", "webp", "avif", "tiff"]
#: what a user may write wherever a format is named: a canonical name or an alias (one Literal, so that
#: pydantic's error lists every choice)
FormatName = Literal["jpeg", "jpg", "png", "webp", "avif", "tiff", "tif"]


@dataclass(frozen=True)
class FormatInfo:
    """How files of one format are named and served."""

    extension: str  # what tilewright writes
    media_type: str
    suffixes: tuple[str, ...]  # every file suffix read as this format (the extension first)
    default_quality: int  # when no `quality` is given (PNG is lossless: 0)


FORMATS: dict[ImageFormat, FormatInfo] = {
    "jpeg": FormatInfo(".jpg", "image/jpeg", (".jpg", ".jpeg"), 85),
    "png": FormatInfo(".png", "image/png", (".png",), 0),
    "webp": FormatInfo(".webp", "image/webp", (".webp",), 80),
    "avif": FormatInfo(".avif", "image/avif", (".avif",), 50),
    "tiff": FormatInfo(".tiff", "image/tiff", (".tiff", ".tif"), 85),
}
FORMAT_ALIASES: dict[str, ImageFormat] = {"jpg": "jpeg", "tif": "tiff"}

#: every accepted spelling -> its canonical name ("jpg" -> "jpeg", "png" -> "png", ...)
CANONICAL: dict[str, ImageFormat] = {**{name: name for name in FORMATS}, **FORMAT_ALIASES}
#: every accepted spelling, in `FormatName`'s order
FORMAT_NAMES: tuple[str, ...] = get_args(FormatName)
if set(FORMATS) != set(get_args(ImageFormat)) or set(CANONICAL) != set(FORMAT_NAMES):
    raise AssertionError("ImageFormat, FormatName and FORMATS/FORMAT_ALIASES must name the same formats")
#: file suffix -> format (".jpg" and ".jpeg" -> "jpeg", ...)
SUFFIX_FORMATS: dict[str, ImageFormat] = {suffix: name for name, info in FORMATS.items() for suffix in info.suffixes}


def format_list() -> str:
    """'jpeg, png, webp, avif or tiff': the formats, for help texts and messages."""
    names = list(FORMATS)
    return f"{', '.join(names[:-1])} or {names[-1]}"
