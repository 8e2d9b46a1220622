"""Watermark: text (rendered by libvips with Pango/fontconfig) or an image, blended with alpha."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pyvips
from pydantic import Field

from tilewright.errors import one_line
from tilewright.imaging.eight_bit import to_uchar
from tilewright.ops.base import ParamError, grey_of, parse_colour

Position = Literal["bottom-right", "bottom-left", "top-right", "top-left", "centre", "center"]


def font_size_for(width: int, divisor: int = 20, minimum: int = 12) -> int:
    """The default text height: a twentieth of the image's width, never under `minimum` pixels."""
    return max(minimum, width // divisor)


def place(image_size: tuple[int, int], mark_size: tuple[int, int], position: str, margin: int) -> tuple[int, int]:
    """Top-left corner of a `mark_size` mark at `position`, `margin` pixels in from the edges."""
    (iw, ih), (mw, mh) = image_size, mark_size
    if position in ("centre", "center"):
        return (iw - mw) // 2, (ih - mh) // 2
    vertical, _, horizontal = position.partition("-")
    x = margin if horizontal == "left" else iw - mw - margin
    y = margin if vertical == "top" else ih - mh - margin
    return x, y


def render_text(text: str, font: str, size: int) -> pyvips.Image:
    """The text's coverage mask (1 band, 0..255), `size` pixels tall per line."""
    try:
        mask = pyvips.Image.text(text, font=f"{font} {size}", dpi=72)
    except pyvips.Error as exc:
        raise ParamError(
            "font",
            f"cannot render text with font {font!r}: libvips has no text support ({one_line(exc, 120)})",
        ) from exc
    if mask.width <= 1 and mask.height <= 1:
        raise ParamError("text", "renders to nothing (empty, or no font found)")
    return mask


def watermark(
    image: pyvips.Image,
    text: Annotated[str, Field(min_length=1, max_length=500)] | None = None,
    logo: str | None = None,
    font: Annotated[str, Field(min_length=1, max_length=200)] = "sans bold",
    font_size: Annotated[int, Field(ge=1, le=4000)] | None = None,
    min_font_size: Annotated[int, Field(ge=1, le=1000)] = 12,
    position: Position = "bottom-right",
    opacity: Annotated[float, Field(gt=0, le=1)] = 0.5,
    colour: str = "#ffffff",
    margin: Annotated[int, Field(ge=0, le=100000)] | None = None,
    logo_scale: Annotated[float, Field(gt=0, le=1)] = 0.2,
) -> pyvips.Image:
    """Blend `text` (or the image file `logo`) into a corner or the centre, semi-transparent.

    The text is `font_size` pixels tall, by default width/20 but at least `min_font_size`,
    and shrunk if it would not fit across the image. A logo is scaled to `logo_scale`
    of the image's width. Only pixels under the mark change.
    """
    if (text is None) == (logo is None):
        raise ParamError("text", "give either text or logo")
    rgb = parse_colour(colour, "colour")
    grey = image.bands - image.hasalpha() < 3
    if text is not None:
        size = font_size or font_size_for(image.width, minimum=min_font_size)
        edge = margin if margin is not None else max(2, size // 2)
        mask = render_text(text, font, size)
        room = image.width - 2 * edge
        if mask.width > room > 0:  # too wide: render again, smaller
            size = max(1, int(size * room / mask.width))
            mask = render_text(text, font, size)
        colour_value = [grey_of(rgb)] if grey else list(rgb)
        alpha = mask if opacity >= 1 else (mask * opacity).cast("uchar")
        mark = mask.new_from_image(colour_value).cast("uchar").bandjoin(alpha)
    else:
        assert logo is not None  # exactly one of text and logo, checked above
        mark = _load_logo(Path(logo), image, logo_scale, opacity, grey)
        edge = margin if margin is not None else max(2, image.width // 40)
    mark = mark.copy(interpretation="b-w" if grey else "srgb")
    x, y = place((image.width, image.height), (mark.width, mark.height), position, edge)
    return _composite(image, mark, x, y)


def _load_logo(path: Path, image: pyvips.Image, scale: float, opacity: float, grey: bool) -> pyvips.Image:
    if not path.is_file():
        raise ParamError("logo", f"no such file: {path}")
    try:
        logo = pyvips.Image.new_from_file(str(path))
        width = max(1, round(image.width * scale))
        logo = logo.thumbnail_image(width, height=max(1, image.height), size="both")
        logo = logo.colourspace("b-w" if grey else "srgb")
    except pyvips.Error as exc:
        raise ParamError("logo", f"cannot read {path.name}: {one_line(exc, 120)}") from exc
    logo = to_uchar(logo)
    if not logo.hasalpha():
        logo = logo.bandjoin(255)
    if opacity < 1:
        logo = logo[:-1].bandjoin((logo[-1] * opacity).cast("uchar"))
    return logo


def _composite(image: pyvips.Image, mark: pyvips.Image, x: int, y: int) -> pyvips.Image:
    """Blend `mark` (with alpha) over `image` at (x, y), only where it lands; keep bands and format."""
    # clip the mark to the image so that the blend touches only the region under it
    left, top = max(0, x), max(0, y)
    right, bottom = min(image.width, x + mark.width), min(image.height, y + mark.height)
    if right <= left or bottom <= top:
        return image
    mark = mark.crop(left - x, top - y, right - left, bottom - top)
    base = image.crop(left, top, right - left, bottom - top)
    space = "b-w" if mark.bands == 2 else "srgb"
    blended = base.composite2(mark, "over", compositing_space=space)
    blended = to_uchar(blended)
    if not image.hasalpha():
        blended = blended[: image.bands]
    blended = blended.copy(interpretation=image.interpretation)
    return image.insert(blended, left, top)
