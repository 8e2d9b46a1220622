"""The one way any image becomes 8-bit sRGB or grey: readers, the operations' sources and the encoders use it.

Web images are 8-bit, 1 or 3 colour bands, with or without alpha. `to_eight_bit` turns anything
libvips decodes into that: other colour spaces converted, deeper or signed samples scaled, extra
bands dropped, and alpha either kept (`background=None`: operations and encoders, which can write
it) or flattened onto `background` (the slide readers: pyramid tiles have no alpha).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyvips

from tilewright.imaging.colour import grey_of

#: interpretations libvips converts to sRGB (or grey) itself; any other is relabelled once 8-bit
COLOUR_SPACES = frozenset({"cmyk", "lab", "labs", "lch", "xyz", "scrgb", "hsv"})


def to_eight_bit(image: pyvips.Image, background: Sequence[int] | None = None) -> pyvips.Image:
    """`image` as 8-bit sRGB (3 bands) or grey (1 band), plus its alpha unless flattened onto `background`.

    `background` is an (r, g, b) colour; on a grey image its luminance is used. Colour spaces in
    `COLOUR_SPACES` are converted; 16-bit samples keep their high byte, signed ones are shifted to
    unsigned, others (float, 32-bit) kept (rounded) if within 0..255 and otherwise stretched min..max.
    Bands past the colour and alpha ones are dropped.
    """
    alpha = image.hasalpha()
    target = "b-w" if image.bands - alpha < 3 else "srgb"
    if image.interpretation in COLOUR_SPACES:
        image = image.colourspace(target)
        alpha = image.hasalpha()
    image = _to_uchar(image)
    if image.interpretation != target:  # before flattening: libvips reads a 16-bit label's alpha as 0..65535
        image = image.copy(interpretation=target)
    if background is not None:
        if alpha and image.bands in (2, 4):
            rgb = (background[0], background[1], background[2])
            image = image.flatten(background=list(rgb) if image.bands == 4 else [grey_of(rgb)])
        elif image.bands == 2:  # two bands that are not grey + alpha: the first one is the image
            image = image[0]
    if image.bands > (3 if background is not None else 4):
        image = image[0:3]
    return image


def _to_uchar(image: pyvips.Image) -> pyvips.Image:
    """Every band scaled to 0..255 (see `to_eight_bit`); an 8-bit image is returned as it is."""
    fmt = image.format
    if fmt == "uchar":
        return image
    if fmt in ("ushort", "short"):
        # the high byte: what libvips' own rgb16 -> srgb conversion does
        unsigned = (image + 32768).cast("ushort") if fmt == "short" else image
        return (unsigned >> 8).cast("uchar")
    if fmt == "char":
        return (image.cast("int") + 128).cast("uchar")
    lo, hi = image.min(), image.max()
    if lo < 0 or hi > 255:  # out of range: stretched, lowest to 0 and highest to 255
        return ((image - lo) * (255.0 / (hi - lo))).cast("uchar")
    return (image.rint() if fmt in ("float", "double") else image).cast("uchar")
