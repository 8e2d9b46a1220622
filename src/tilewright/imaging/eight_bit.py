"""The one way any image becomes 8-bit sRGB or grey: readers, the operations' sources and the encoders use it.

Web images are 8-bit, 1 or 3 colour bands, with or without alpha. `to_eight_bit` turns anything
libvips decodes into that: other colour spaces converted, deeper or signed samples scaled, extra
bands dropped. Its two uses differ in three points, each for a reason:

- `background=None` (a chain's source, the encoders): alpha kept (the output can carry it); 16-bit
  sRGB/grey converted by libvips (it rounds); float or 32-bit samples clipped to 0..255, because a
  source is streamed once and cannot be read twice to measure its range.
- `background=(r, g, b)` (the slide readers: pyramid tiles have no alpha): alpha flattened onto it;
  16-bit samples keep their high byte; float or 32-bit levels out of 0..255 stretched min..max (a
  level is read at random, so measuring it first is possible).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyvips

from tilewright.imaging.colour import grey_of

#: interpretations libvips converts to sRGB (or grey) itself; any other is relabelled once 8-bit
COLOUR_SPACES = frozenset({"cmyk", "lab", "labs", "lch", "xyz", "scrgb", "hsv"})
#: 16-bit interpretations libvips converts itself, rounding (for a chain's source and the encoders)
SIXTEEN_BIT = frozenset({"rgb16", "grey16"})


def to_eight_bit(image: pyvips.Image, background: Sequence[int] | None = None) -> pyvips.Image:
    """`image` as 8-bit sRGB (3 bands) or grey (1 band), plus its alpha unless flattened onto `background`.

    `background` is an (r, g, b) colour; on a grey image its luminance is used. Colour spaces in
    `COLOUR_SPACES` are converted; the rest as the module says for each use. Bands past the colour
    and alpha ones are dropped.
    """
    alpha = image.hasalpha()
    target = "b-w" if image.bands - alpha < 3 else "srgb"
    flatten = background is not None
    if image.interpretation in COLOUR_SPACES or (not flatten and image.interpretation in SIXTEEN_BIT):
        image = image.colourspace(target)
        alpha = image.hasalpha()
    image = _to_uchar(image, stretch=flatten)
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


def _to_uchar(image: pyvips.Image, *, stretch: bool) -> pyvips.Image:
    """Every band to 0..255 (see the module); an 8-bit image is returned as it is."""
    fmt = image.format
    if fmt == "uchar":
        return image
    if fmt in ("ushort", "short"):
        # the high byte: what libvips' own rgb16 -> srgb conversion does
        unsigned = (image + 32768).cast("ushort") if fmt == "short" else image
        return (unsigned >> 8).cast("uchar")
    if fmt == "char":
        return (image.cast("int") + 128).cast("uchar")
    if stretch:
        lo, hi = image.min(), image.max()
        if (lo < 0 or hi > 255) and hi > lo:  # out of range: stretched, lowest to 0 and highest to 255
            return ((image - lo) * (255.0 / (hi - lo))).cast("uchar")
    return to_uchar(image)


def to_uchar(image: pyvips.Image) -> pyvips.Image:
    """Round and clip to 8 bits: a float result (composite, convolution) or a source that streams once."""
    if image.format == "uchar":
        return image
    return image.rint().cast("uchar") if image.format in ("float", "double") else image.cast("uchar")
