"""IIIF Image API 3 URL parsing: pure functions, no I/O (https://iiif.io/api/image/3.0/).

`{region}/{size}/{rotation}/{quality}.{format}` is parsed against the full image size
into a `Request` (a region in full-resolution pixels, an output size, rotation and
mirroring, quality and format). Anything malformed or out of range raises `IiifError`,
which the route turns into a 400 (never a 500).

Supported: regions full, square, x,y,w,h and pct:x,y,w,h; sizes max, w,, ,h, w,h, !w,h
and pct:n, each also with ^ (upscaling); rotation any angle 0..360, with ! to mirror;
qualities default, color, gray, bitonal; formats jpg, png, webp.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TypedDict

QUALITIES = ("default", "color", "gray", "bitonal")
FORMATS = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
CONTEXT = "http://iiif.io/api/image/3/context.json"
PROTOCOL = "http://iiif.io/api/image"
EXTRA_FEATURES = [
    "mirroring",
    "regionByPct",
    "regionByPx",
    "regionSquare",
    "rotationArbitrary",
    "rotationBy90s",
    "sizeByConfinedWh",
    "sizeByH",
    "sizeByPct",
    "sizeByW",
    "sizeByWh",
    "sizeUpscaling",
    "baseUriRedirect",
    "cors",
    "jsonldMediaType",
]

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_INT = re.compile(r"^\d{1,9}$")
_PX4 = re.compile(r"^(\d{1,9}),(\d{1,9}),(\d{1,9}),(\d{1,9})$")
_PCT4 = re.compile(rf"^pct:({_NUMBER}),({_NUMBER}),({_NUMBER}),({_NUMBER})$")
_PCT1 = re.compile(rf"^pct:({_NUMBER})$")
_WH = re.compile(r"^(\d{0,9}),(\d{0,9})$")
_ROTATION = re.compile(rf"^(!?)({_NUMBER})$")


class IiifError(ValueError):
    """A malformed or impossible IIIF request (HTTP 400)."""


class Limits(TypedDict):
    """The server's maximums (info.json's maxWidth, maxHeight, maxArea), as `parse` and `info` take them."""

    max_width: int
    max_height: int
    max_area: int


@dataclass(frozen=True)
class Request:
    x: int
    y: int
    w: int
    h: int
    out_w: int
    out_h: int
    rotation: float
    mirror: bool
    quality: str
    format: str

    @property
    def media_type(self) -> str:
        return FORMATS[self.format]

    def canonical(self) -> str:
        """The canonical URI path of this request (used as the cache key)."""
        rot = f"{'!' if self.mirror else ''}{self.rotation:g}"
        # Image API 3 §4.7: the canonical size is w,h, with ^ when it is larger than the region (else it
        # would not parse again: found by tests/test_properties.py)
        up = "^" if self.out_w > self.w or self.out_h > self.h else ""
        return f"{self.x},{self.y},{self.w},{self.h}/{up}{self.out_w},{self.out_h}/{rot}/{self.quality}.{self.format}"


def parse_region(text: str, width: int, height: int) -> tuple[int, int, int, int]:
    """Region in full-image pixels (x, y, w, h), clipped to the image."""
    if text == "full":
        return 0, 0, width, height
    if text == "square":
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, side, side
    match = _PX4.match(text)
    if match:
        x, y, w, h = (int(v) for v in match.groups())
    else:
        match = _PCT4.match(text)
        if not match:
            raise IiifError(f"bad region {text!r}: use full, square, x,y,w,h or pct:x,y,w,h")
        px, py, pw, ph = (float(v) for v in match.groups())
        if px > 100 or py > 100:
            raise IiifError(f"region {text!r} starts outside the image")
        x, y = int(math.floor(px * width / 100)), int(math.floor(py * height / 100))
        x1 = int(math.ceil(min(100.0, px + pw) * width / 100 - 1e-9))
        y1 = int(math.ceil(min(100.0, py + ph) * height / 100 - 1e-9))
        w, h = x1 - x, y1 - y
    if w <= 0 or h <= 0:
        raise IiifError(f"region {text!r} has no width or height")
    if x >= width or y >= height:
        raise IiifError(f"region {text!r} starts outside the {width}x{height} image")
    return x, y, min(w, width - x), min(h, height - y)


def parse_size(text: str, rw: int, rh: int, max_width: int, max_height: int, max_area: int) -> tuple[int, int]:
    """Output size for a `rw` x `rh` region, within the server's maximums."""
    upscale = text.startswith("^")
    body = text[1:] if upscale else text
    if body == "max":  # the largest the server allows (^max: upscaled up to that)
        limit = min(max_width / rw, max_height / rh, math.sqrt(max_area / (rw * rh)))
        scale = limit if upscale else min(1.0, limit)
        return max(1, int(rw * scale + 1e-9)), max(1, int(rh * scale + 1e-9))
    match = _PCT1.match(body)
    if match:
        pct = float(match.group(1))
        if pct <= 0:
            raise IiifError(f"size {text!r}: percentage must be above 0")
        if pct > 100 and not upscale:
            raise IiifError(f"size {text!r}: over 100% needs ^ (upscaling)")
        w, h = max(1, round(rw * pct / 100)), max(1, round(rh * pct / 100))
    else:
        confined = body.startswith("!")
        match = _WH.match(body[1:] if confined else body)
        if not match:
            raise IiifError(f"bad size {text!r}: use max, w,, ,h, w,h, !w,h or pct:n (with ^ to upscale)")
        sw, sh = match.groups()
        if confined:
            if not sw or not sh:
                raise IiifError(f"size {text!r}: !w,h needs both w and h")
            bw, bh = int(sw), int(sh)
            if bw <= 0 or bh <= 0:
                raise IiifError(f"size {text!r}: width and height must be above 0")
            scale = min(bw / rw, bh / rh)
            if scale > 1 and not upscale:
                scale = 1.0
            w, h = max(1, min(bw, round(rw * scale))), max(1, min(bh, round(rh * scale)))
        elif sw and sh:
            w, h = int(sw), int(sh)
        elif sw:
            w = int(sw)
            h = max(1, round(rh * w / rw))
        elif sh:
            h = int(sh)
            w = max(1, round(rw * h / rh))
        else:
            raise IiifError(f"bad size {text!r}: give a width, a height or both")
        if w <= 0 or h <= 0:
            raise IiifError(f"size {text!r}: width and height must be above 0")
    if not upscale and (w > rw or h > rh):
        raise IiifError(f"size {text!r} is larger than the {rw}x{rh} region: use ^ to upscale")
    if w > max_width or h > max_height or w * h > max_area:
        raise IiifError(
            f"size {text!r} -> {w}x{h} is over the server maximum ({max_width}x{max_height}, {max_area:,} pixels)"
        )
    return w, h


def parse_rotation(text: str) -> tuple[float, bool]:
    match = _ROTATION.match(text)
    if not match:
        raise IiifError(f"bad rotation {text!r}: use a number of degrees 0..360, with ! to mirror")
    degrees = float(match.group(2))
    if degrees > 360:
        raise IiifError(f"rotation {text!r} is over 360 degrees")
    return degrees % 360, bool(match.group(1))


def parse_quality_format(text: str) -> tuple[str, str]:
    quality, dot, fmt = text.rpartition(".")
    if not dot:
        raise IiifError(f"bad quality.format {text!r}: e.g. default.jpg")
    if quality not in QUALITIES:
        raise IiifError(f"unknown quality {quality!r}; choose one of {', '.join(QUALITIES)}")
    if fmt not in FORMATS:
        raise IiifError(f"unsupported format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return quality, fmt


def parse(
    region: str,
    size: str,
    rotation: str,
    quality_format: str,
    width: int,
    height: int,
    *,
    max_width: int,
    max_height: int,
    max_area: int,
) -> Request:
    """The whole image request; raises IiifError for anything invalid."""
    x, y, w, h = parse_region(region, width, height)
    out_w, out_h = parse_size(size, w, h, max_width, max_height, max_area)
    degrees, mirror = parse_rotation(rotation)
    quality, fmt = parse_quality_format(quality_format)
    return Request(x, y, w, h, out_w, out_h, degrees, mirror, quality, fmt)


def scale_factors(width: int, height: int, tile: int) -> list[int]:
    """Powers of two from 1 until one tile covers the whole image."""
    factors = [1]
    while max(width, height) / factors[-1] > tile:
        factors.append(factors[-1] * 2)
    return factors


def info(base_id: str, width: int, height: int, tile: int, *, max_width: int, max_height: int, max_area: int) -> dict:
    """The info.json document of an image served at `base_id`."""
    factors = scale_factors(width, height, tile)
    sizes = []
    for factor in reversed(factors):
        w, h = -(-width // factor), -(-height // factor)
        if w <= max_width and h <= max_height and w * h <= max_area:
            sizes.append({"width": w, "height": h})
    return {
        "@context": CONTEXT,
        "id": base_id,
        "type": "ImageService3",
        "protocol": PROTOCOL,
        "profile": "level2",
        "width": width,
        "height": height,
        "maxWidth": max_width,
        "maxHeight": max_height,
        "maxArea": max_area,
        "tiles": [{"width": tile, "height": tile, "scaleFactors": factors}],
        "sizes": sizes,
        "extraFormats": ["webp"],
        "extraQualities": ["color", "gray", "bitonal"],
        "extraFeatures": EXTRA_FEATURES,
        "preferredFormats": ["jpg"],
    }
