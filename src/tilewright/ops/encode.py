"""Output operations (format, quality, strip) and the encoder that honours them.

`format`, `quality` and `strip` do not touch pixels: they record the choice on the
image (as `tw-*` metadata), and `encode`/`save` read it. So they chain like any
other operation: `["resize=0.5", "format=webp", "quality=70"]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import pyvips
from pydantic import Field

from tilewright.imaging.eight_bit import to_eight_bit
from tilewright.imaging.image_formats import CANONICAL, FORMATS, FormatName, ImageFormat
from tilewright.ops.base import CHROMA_FIELD, FORMAT_FIELD, QUALITY_FIELD, STRIP_FIELD, ParamError, set_field

Quality = Annotated[int, Field(ge=1, le=100)]

WHITE = (255, 255, 255)
JPEG_MAX = 65500
OPTIMIZE_PIXELS = 16_000_000
_METADATA = ("exif-data", "xmp-data", "iptc-data", "icc-profile-data", "orientation")


@lru_cache(maxsize=1)
def have_avif() -> bool:
    """Whether this libvips can write AVIF (heifsave with the AV1 encoder)."""
    try:
        pyvips.Image.black(16, 16, bands=3).heifsave_buffer(compression="av1", Q=30, effort=0)
        return True
    except pyvips.Error:
        return False


def available_formats() -> list[str]:
    return [name for name in FORMATS if name != "avif" or have_avif()]


#: JPEG chroma subsampling -> libvips' subsample_mode. "auto" is libvips' rule: 4:2:0 below quality 90,
#: full-resolution colour (4:4:4) from 90 up; "420" always halves the colour resolution, as Pillow and
#: libjpeg's cjpeg do at every quality (smaller files, about half the encoding work at 4:4:4's quality).
CHROMA = {"auto": "auto", "420": "on", "444": "off"}


def format_(
    image: pyvips.Image,
    format: FormatName,
    quality: Quality | None = None,
    chroma: Literal["auto", "420", "444"] | None = None,
) -> pyvips.Image:
    """Encode the result as `format` (jpeg, png, webp, avif when libvips has it, tiff); for JPEG,
    `chroma` is the colour subsampling: `auto` (4:4:4 from quality 90 up, else 4:2:0), `420` or `444`."""
    name = CANONICAL[format]
    if name == "avif" and not have_avif():
        raise ParamError("format", "this libvips cannot write AVIF; use jpeg, png or webp")
    if chroma is not None and name != "jpeg":
        raise ParamError("chroma", f"chroma subsampling is a JPEG setting; {name} has none")
    image = set_field(image, FORMAT_FIELD, name)
    if chroma is not None:
        image = set_field(image, CHROMA_FIELD, chroma)
    return set_field(image, QUALITY_FIELD, quality) if quality is not None else image


def quality(image: pyvips.Image, quality: Quality) -> pyvips.Image:
    """Encoder quality 1..100 for JPEG, WebP, AVIF (ignored by PNG, which is lossless)."""
    return set_field(image, QUALITY_FIELD, quality)


def strip(image: pyvips.Image) -> pyvips.Image:
    """Drop EXIF, XMP, IPTC and the ICC profile (pixels are converted to sRGB first)."""
    fields = image.get_fields()
    if "icc-profile-data" in fields and image.interpretation == "srgb" and image.format == "uchar":
        try:
            image = image.icc_transform("srgb", embedded=True)
        except pyvips.Error:  # a broken profile: keep the pixels as they are
            pass
    image = image.copy()
    for name in _METADATA:
        if name in image.get_fields():
            image.remove(name)
    return set_field(image, STRIP_FIELD, 1)


@dataclass(frozen=True)
class Encoded:
    data: bytes
    format: str
    media_type: str
    extension: str
    width: int
    height: int


def output_format(image: pyvips.Image, default: str = "jpeg") -> ImageFormat:
    """The format `image` is to be written in: the chain's `format`, else `default` (any accepted spelling)."""
    return CANONICAL[image.get(FORMAT_FIELD) if FORMAT_FIELD in image.get_fields() else default]


def _prepare(image: pyvips.Image, fmt: ImageFormat) -> tuple[pyvips.Image, dict[str, Any]]:
    fields = image.get_fields()
    q = image.get(QUALITY_FIELD) if QUALITY_FIELD in fields else FORMATS[fmt].default_quality
    chroma = image.get(CHROMA_FIELD) if CHROMA_FIELD in fields else "auto"
    stripped = STRIP_FIELD in fields
    # JPEG has no alpha: flattened on white, as browsers show it; the other formats keep it
    image = to_eight_bit(image, WHITE if fmt == "jpeg" else None)
    if fmt == "jpeg" and max(image.width, image.height) > JPEG_MAX:
        raise ParamError(
            None,
            f"{image.width} x {image.height} is too large for JPEG (at most {JPEG_MAX} "
            "pixels a side); scale it down or choose png, webp or tiff",
        )
    keep = {"keep": "none"} if stripped else {}
    options = {
        # optimised Huffman tables make libjpeg hold every coefficient of the image: small outputs only
        "jpeg": {
            "Q": q,
            "optimize_coding": image.width * image.height <= OPTIMIZE_PIXELS,
            "subsample_mode": CHROMA[chroma],
            **keep,
        },
        "png": {"compression": 6, **keep},
        "webp": {"Q": q, **keep},
        "avif": {"Q": q, "compression": "av1", "effort": 2, **keep},
        "tiff": {"compression": "jpeg", "Q": q, **keep} if not image.hasalpha() else {"compression": "deflate", **keep},
    }[fmt]
    return image, options


_SAVERS: dict[ImageFormat, str] = {
    "jpeg": "jpegsave",
    "png": "pngsave",
    "webp": "webpsave",
    "avif": "heifsave",
    "tiff": "tiffsave",
}


def encode(image: pyvips.Image, default_format: str = "jpeg") -> Encoded:
    """Encode to bytes in the chain's format (or `default_format`), honouring quality and strip."""
    fmt = output_format(image, default_format)
    prepared, options = _prepare(image, fmt)
    data = getattr(prepared, f"{_SAVERS[fmt]}_buffer")(**options)
    info = FORMATS[fmt]
    return Encoded(data, fmt, info.media_type, info.extension, prepared.width, prepared.height)


def save(
    image: pyvips.Image, stem: Path, default_format: str = "jpeg", watch: Callable[[pyvips.Image], Any] | None = None
) -> Path:
    """Write `image` to `stem` + the format's extension; return the path written.

    `watch(prepared)` is called with the very image libvips will write, to follow its
    progress or kill it (see `pipeline.Runner.watch`).
    """
    fmt = output_format(image, default_format)
    prepared, options = _prepare(image, fmt)
    if watch is not None:
        watch(prepared)
    path = Path(f"{stem}{FORMATS[fmt].extension}")
    try:
        getattr(prepared, _SAVERS[fmt])(str(path), **options)
    except BaseException:  # a source that fails mid-decode (or a cancel): no half-written file is left behind
        path.unlink(missing_ok=True)
        raise
    return path
