"""Operations that change an image's geometry: resize, thumbnail, crop, split, rotate, flip, auto-orient."""

from __future__ import annotations

from typing import Annotated, Literal

import pyvips
from pydantic import Field

from tilewright.ops.base import ParamError, background_for, parse_colour

Side = Annotated[int, Field(ge=1, le=1_000_000)]


def resize(
    image: pyvips.Image,
    scale: Annotated[float, Field(gt=0, le=100)] | None = None,
    width: Side | None = None,
    height: Side | None = None,
    mode: Literal["fit", "exact"] = "fit",
) -> pyvips.Image:
    """Scale by `scale`; or fit inside `width` x `height` keeping the aspect ratio (either side
    alone: the other follows); or, with `mode="exact"`, to exactly `width` x `height`."""
    if scale is not None:
        if width is not None or height is not None:
            raise ParamError("scale", "give either scale or width/height, not both")
        if mode == "exact":
            raise ParamError("mode", "exact needs width and height, not scale")
        target_w = max(1, round(image.width * scale))
        target_h = max(1, round(image.height * scale))
        return image.thumbnail_image(target_w, height=target_h, size="force")
    if width is None and height is None:
        raise ParamError("scale", "give a scale factor, or a width and/or height")
    if mode == "exact":
        if width is None or height is None:
            raise ParamError("width" if width is None else "height", "mode exact needs both width and height")
        return image.thumbnail_image(width, height=height, size="force")
    box_w = width or 10**9
    box_h = height or 10**9
    target_w, target_h = fit_size(image.width, image.height, box_w, box_h, enlarge=True)
    return image.thumbnail_image(target_w, height=target_h, size="force")


def fit_size(width: int, height: int, box_width: int, box_height: int, *, enlarge: bool = False) -> tuple[int, int]:
    """The size of a `width` x `height` image fitted inside the box, aspect kept (rounded half up)."""
    if not enlarge and width <= box_width and height <= box_height:
        return width, height
    if width * box_height >= height * box_width:  # the width limits
        return box_width, max(1, int(height * box_width / width + 0.5))
    return max(1, int(width * box_height / height + 0.5)), box_height


def thumbnail(
    image: pyvips.Image,
    width: Side,
    height: Side | None = None,
) -> pyvips.Image:
    """Fit inside `width` x `height` (square if no height), keeping the aspect ratio, never enlarging.

    First in a chain, it shrinks on load: JPEGs decode at 1/2, 1/4 or 1/8 size,
    slides read their smallest pyramid level that is still large enough.
    """
    target = fit_size(image.width, image.height, width, height or width)
    if target == (image.width, image.height):
        return image
    return image.thumbnail_image(target[0], height=target[1], size="force")


def crop(
    image: pyvips.Image,
    x: Annotated[int, Field(ge=0)],
    y: Annotated[int, Field(ge=0)],
    width: Side,
    height: Side,
) -> pyvips.Image:
    """The `width` x `height` region whose top-left corner is (`x`, `y`); it must lie inside the image."""
    if x >= image.width:
        raise ParamError("x", f"{x} is outside the image (width {image.width})")
    if y >= image.height:
        raise ParamError("y", f"{y} is outside the image (height {image.height})")
    if x + width > image.width:
        raise ParamError("width", f"x + width = {x + width} is past the image's width of {image.width}")
    if y + height > image.height:
        raise ParamError("height", f"y + height = {y + height} is past the image's height of {image.height}")
    return image.crop(x, y, width, height)


def split(image: pyvips.Image) -> list[pyvips.Image]:
    """Four quadrants (top-left, top-right, bottom-left, bottom-right) that tile the image exactly.

    With an odd side the right/bottom quadrants get the extra pixel.
    """
    if image.width < 2 or image.height < 2:
        raise ParamError(None, f"cannot split a {image.width} x {image.height} image into quadrants")
    half_w, half_h = image.width // 2, image.height // 2
    rest_w, rest_h = image.width - half_w, image.height - half_h
    return [
        image.crop(0, 0, half_w, half_h),
        image.crop(half_w, 0, rest_w, half_h),
        image.crop(0, half_h, half_w, rest_h),
        image.crop(half_w, half_h, rest_w, rest_h),
    ]


def rotate(
    image: pyvips.Image,
    angle: Annotated[float, Field(gt=-360, lt=360)],
    background: str = "#ffffff",
) -> pyvips.Image:
    """Rotate clockwise by `angle` degrees. Multiples of 90 are exact; other angles enlarge the
    canvas and fill the corners with `background`."""
    colour = parse_colour(background, "background")
    turns = angle / 90
    if turns == int(turns):
        return image.rot(f"d{int(turns) % 4 * 90}")
    fill = background_for(image, colour) + ([255] if image.hasalpha() else [])
    return image.rotate(angle, background=fill)


def flip(
    image: pyvips.Image,
    direction: Literal["horizontal", "vertical", "both"] = "horizontal",
) -> pyvips.Image:
    """Mirror left-right (`horizontal`), top-bottom (`vertical`) or both."""
    if direction in ("horizontal", "both"):
        image = image.fliphor()
    if direction in ("vertical", "both"):
        image = image.flipver()
    return image


def auto_orient(image: pyvips.Image) -> pyvips.Image:
    """Turn the image upright as its EXIF orientation tag says, and drop the tag."""
    return image.autorot()


# -- shorthand parsers: "resize=0.5", "resize=300x200", "crop=10,20,300,200" ---------------


def parse_size(text: str, param: str = "size") -> tuple[int | None, int | None]:
    """'300x200' -> (300, 200); '300x' -> (300, None); 'x200' -> (None, 200); '300' -> (300, 300)."""
    value = text.strip().lower()
    try:
        if "x" not in value:
            side = int(value)
            return side, side
        w, _, h = value.partition("x")
        return (int(w) if w else None, int(h) if h else None)
    except ValueError:
        raise ParamError(param, f"size must look like 300x200, 300x or x200, not {text!r}") from None


def short_resize(value: str) -> dict:
    text = value.strip()
    exact = text.endswith("!")
    text = text.rstrip("!")
    if "x" in text.lower():
        width, height = parse_size(text)
        return {"width": width, "height": height, **({"mode": "exact"} if exact else {})}
    try:
        return {"scale": float(text.rstrip("%")) / (100 if text.endswith("%") else 1)}
    except ValueError:
        raise ParamError("scale", f"resize takes a factor (0.5, 50%) or a size (300x200), not {value!r}") from None


def short_thumbnail(value: str) -> dict:
    width, height = parse_size(value, "width")
    if width is None:
        raise ParamError("width", f"thumbnail needs a width: 150 or 150x100, not {value!r}")
    return {"width": width, "height": height}


def short_crop(value: str) -> dict:
    parts = [p.strip() for p in value.replace("+", ",").split(",")]
    if len(parts) != 4:
        raise ParamError(None, f"crop takes x,y,width,height, not {value!r}")
    return dict(zip(("x", "y", "width", "height"), parts, strict=True))


def short_flip(value: str) -> dict:
    aliases = {"h": "horizontal", "v": "vertical", "x": "horizontal", "y": "vertical", "hv": "both"}
    return {"direction": aliases.get(value.strip().lower(), value.strip().lower())}
