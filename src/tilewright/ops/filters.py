"""Operations on pixel values: Gaussian blur, flattening alpha onto a colour."""

from __future__ import annotations

import math
from typing import Annotated

import pyvips
from pydantic import Field

from tilewright.imaging.eight_bit import to_uchar
from tilewright.ops.base import ParamError, background_for, parse_colour


def kernel_sigma(size: int) -> float:
    """The sigma OpenCV derives from a kernel size when sigma is 0."""
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def blur(
    image: pyvips.Image,
    sigma: Annotated[float, Field(ge=0, le=500)] = 0.0,
    size: Annotated[int, Field(ge=0, le=2001)] = 0,
) -> pyvips.Image:
    """Gaussian blur. `sigma` in pixels; `size` is the kernel width (odd), 0 meaning derived from
    sigma (about 6 sigma wide). Give either or both, as OpenCV's GaussianBlur: sigma 0 with a
    size derives sigma from the size."""
    if sigma == 0 and size == 0:
        raise ParamError("sigma", "give a sigma > 0 or an odd kernel size > 0")
    if size:
        if size % 2 == 0:
            raise ParamError("size", f"kernel size must be odd, not {size}")
        sigma = sigma or kernel_sigma(size)
        if size == 1:
            return image
        radius = size // 2
        weights = [math.exp(-(i * i) / (2 * sigma * sigma)) for i in range(-radius, radius + 1)]
        total = sum(weights)
        mask = pyvips.Image.new_from_list([[w / total for w in weights]])
        return to_uchar(image.convsep(mask, precision="float")).copy(interpretation=image.interpretation)
    # libvips sizes the mask itself: it stops where the Gaussian falls under 1/1000 (about 3.7 sigma)
    return image.gaussblur(sigma, min_ampl=0.001)


def flatten(image: pyvips.Image, background: str = "#ffffff") -> pyvips.Image:
    """Composite any alpha channel onto `background`; an opaque image is returned unchanged."""
    colour = parse_colour(background, "background")
    if not image.hasalpha():
        return image
    return to_uchar(image.flatten(background=background_for(image, colour)))
