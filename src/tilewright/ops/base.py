"""What every operation shares: the error, the parsed step, and parameter helpers.

An operation is a plain function `op(image, **params) -> image | list[image]`.
Its parameters are declared in its signature with types and `Annotated` limits
(`Annotated[float, Field(gt=0)]`); `parse_chain` checks them against that
signature before any pixel is read. Checks that need more than one parameter, or
the image itself, are made in the function and raise `ParamError`, which the chain
turns into an `OperationError` naming the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyvips

from tilewright.errors import InputError
from tilewright.imaging.colour import RGB, grey_of
from tilewright.imaging.colour import parse_colour as imaging_colour

# Encoding choices travel with the image as metadata, so that format/quality/strip
# stay pure functions on an image like every other operation.
FORMAT_FIELD = "tw-format"
QUALITY_FIELD = "tw-quality"
STRIP_FIELD = "tw-strip"
CHROMA_FIELD = "tw-chroma"
ENCODING_FIELDS = (FORMAT_FIELD, QUALITY_FIELD, STRIP_FIELD, CHROMA_FIELD)


class OperationError(InputError):
    """A step of an operation chain is wrong: unknown, bad parameter, or impossible on this image.

    `index` is the step's position in the chain (0-based), `op` its name, `param`
    the offending parameter when there is one.
    """

    def __init__(
        self,
        reason: str,
        *,
        index: int | None = None,
        op: str | None = None,
        param: str | None = None,
        http_status: int | None = None,
    ) -> None:
        self.index = index
        self.op = op
        self.param = param
        if http_status is not None:
            self.http_status = http_status
        where = []
        if index is not None:
            where.append(f"operation {index}")
        if op:
            where.append(f"({op})" if where else op)
        prefix = " ".join(where)
        super().__init__(f"{prefix}: {reason}" if prefix else reason)
        self.reason = reason


class ParamError(ValueError):
    """Raised inside an operation: `param` is the bad parameter (or None), the message says why."""

    def __init__(self, param: str | None, message: str) -> None:
        self.param = param
        super().__init__(f"{param}: {message}" if param else message)


@dataclass(frozen=True)
class Step:
    """One validated operation of a chain: its registry name and checked parameters."""

    op: str
    params: dict[str, Any] = field(default_factory=dict)
    index: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, **self.params}


# -- helpers the operations share ----------------------------------------------------


def parse_colour(text: str, param: str = "colour") -> RGB:
    """`imaging.colour.parse_colour` for an operation's parameter: a bad colour is a `ParamError` naming it."""
    try:
        return imaging_colour(text)
    except ValueError as exc:
        raise ParamError(param, str(exc)) from None


def background_for(image: pyvips.Image, rgb: tuple[int, int, int]) -> list[int]:
    """The colour as a pixel of `image` without its alpha: 3 values for colour, 1 for grey."""
    colour_bands = image.bands - 1 if image.hasalpha() else image.bands
    return list(rgb) if colour_bands >= 3 else [grey_of(rgb)]


def with_encoding_of(result: pyvips.Image, source: pyvips.Image) -> pyvips.Image:
    """Carry format/quality/strip choices from `source` to `result` if an operation dropped them."""
    fields = source.get_fields()
    missing = [name for name in ENCODING_FIELDS if name in fields and name not in result.get_fields()]
    if not missing:
        return result
    result = result.copy()
    for name in missing:
        value = source.get(name)
        gtype = pyvips.GValue.gint_type if isinstance(value, int) else pyvips.GValue.gstr_type
        result.set_type(gtype, name, value)
    return result


def set_field(image: pyvips.Image, name: str, value: int | str) -> pyvips.Image:
    image = image.copy()
    gtype = pyvips.GValue.gint_type if isinstance(value, int) else pyvips.GValue.gstr_type
    image.set_type(gtype, name, value)
    return image
