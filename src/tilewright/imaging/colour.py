"""The one colour parser: settings, operations and readers all read colours through `parse_colour`.

Pure Python (no pyvips), so that `Settings` can validate `TILEWRIGHT_BACKGROUND` where it is declared.
"""

from __future__ import annotations

RGB = tuple[int, int, int]

NAMED_COLOURS: dict[str, RGB] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "grey": (128, 128, 128),
    "gray": (128, 128, 128),
    "yellow": (255, 255, 0),
}


def parse_colour(text: str) -> RGB:
    """'#rrggbb', 'rrggbb', '#rgb' or a few names (white, black, red, ...) -> (r, g, b).

    `ValueError` saying what is accepted for anything else.
    """
    value = str(text).strip().lower()
    if value in NAMED_COLOURS:
        return NAMED_COLOURS[value]
    hexa = value.lstrip("#")
    if len(hexa) == 3:
        hexa = "".join(c * 2 for c in hexa)
    if len(hexa) != 6 or any(c not in "0123456789abcdef" for c in hexa):
        raise ValueError(f"colour must be #rrggbb, #rgb or a name like white, not {text!r}")
    return (int(hexa[0:2], 16), int(hexa[2:4], 16), int(hexa[4:6], 16))


def grey_of(rgb: RGB) -> int:
    """The luminance of an sRGB colour, for grey images (Rec. 601 weights, as libvips and Pillow)."""
    r, g, b = rgb
    return round(0.299 * r + 0.587 * g + 0.114 * b)
