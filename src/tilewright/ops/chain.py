"""Running a chain: `apply_chain` over images already loaded, `run_chain` from an opened `Source`.

Steps run lazily, left to right; a step that returns several images (`split`) multiplies
them. Errors are `OperationError`s naming the step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pyvips

from tilewright.config import Settings, get_settings
from tilewright.errors import one_line
from tilewright.ops.base import OperationError, ParamError, Step, with_encoding_of
from tilewright.ops.registry import OPS
from tilewright.ops.source import LeadThumbnail, Source, lead_thumbnail

#: a chain may not make more images than this (split chained 5 times makes 1024)
MAX_IMAGES = 1024


def run_chain(
    source: Source,
    steps: Sequence[Step],
    settings: Settings | None = None,
    *,
    thumbnail: Callable[[LeadThumbnail], pyvips.Image] | None = None,
) -> list[pyvips.Image]:
    """The chain's results for `source`, lazily: loaded the cheapest way (`Source.load`), then `apply_chain`.

    `thumbnail(lead)`, when given, makes a leading thumbnail instead of `Source.thumbnail` (the recipe
    runner hands out one kept in memory). Nothing is decoded until the results are written.
    """
    lead = lead_thumbnail(steps) if thumbnail is not None else None
    if thumbnail is not None and lead is not None:
        image, rest = thumbnail(lead), lead.rest
    else:
        image, rest = source.load(list(steps))
    return apply_chain(image, rest, settings or source.settings)


def apply_chain(
    images: pyvips.Image | Iterable[pyvips.Image], steps: Iterable[Step], settings: Settings | None = None
) -> list[pyvips.Image]:
    """Run `steps` over each image, lazily; a step that returns several images (split) multiplies them.

    A step may not make an image larger than `max_image_pixels` unless its input
    already was (a huge slide may be cropped or blurred, but not enlarged).
    """
    settings = settings or get_settings()
    current = [images] if isinstance(images, pyvips.Image) else list(images)
    for position, step in enumerate(steps):
        index = step.index if step.index is not None else position
        op = OPS[step.op]
        produced: list[pyvips.Image] = []
        for image in current:
            try:
                result = op.fn(image, **step.params)
            except ParamError as exc:
                raise OperationError(str(exc), index=index, op=step.op, param=exc.param) from None
            except pyvips.Error as exc:  # an op refusing this image (its file is read later, when written)
                raise OperationError(f"libvips failed: {one_line(exc)}", index=index, op=step.op) from None
            for out in result if isinstance(result, list) else [result]:
                _check_size(out, image, settings, index, step.op)
                produced.append(with_encoding_of(out, image))
        if len(produced) > MAX_IMAGES:
            raise OperationError(
                f"the chain would make {len(produced)} images; at most {MAX_IMAGES}",
                index=index,
                op=step.op,
                http_status=413,
            )
        current = produced
    return current


def _check_size(out: pyvips.Image, source: pyvips.Image, settings: Settings, index: int, name: str) -> None:
    pixels = out.width * out.height
    if pixels > settings.max_image_pixels and pixels > source.width * source.height:
        raise OperationError(
            f"the result would be {out.width} x {out.height} = {pixels:,} pixels, over the limit "
            f"of {settings.max_image_pixels:,} (TILEWRIGHT_MAX_IMAGE_PIXELS)",
            index=index,
            op=name,
            http_status=413,
        )
