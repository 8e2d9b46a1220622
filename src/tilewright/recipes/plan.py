"""Planning a recipe's image outputs: which run together in a lane, and whether to decode the source once.

Image outputs are made in *lanes* run side by side (`PARALLEL_OUTPUTS` threads; libvips
releases the GIL): the thumbnails in one lane, the largest decoded once with shrink-on-load
and the smaller ones made from it in memory; every other output (a full-size copy, a chain
without a leading thumbnail) in a lane of its own, streamed. A source with no shrink-on-load
that more lanes would decode than run at once (or that a chain reads out of order) is first
decoded once into a temporary file (`decode_once`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyvips

from tilewright.ops import Source, lead_thumbnail, needs_random_access
from tilewright.recipes.schema import Output

#: a thumbnail up to this many pixels is kept in memory and the recipe's smaller thumbnails are made from it
CACHE_PIXELS = 25_000_000

#: image outputs made at once, one thread each: while one lane decodes, another encodes. More than the
#: cores gains nothing (each lane is itself multi-threaded by libvips) and adds each lane's memory.
PARALLEL_OUTPUTS = max(1, min(4, os.cpu_count() or 1))

#: a source without shrink-on-load this large or larger may be decoded once (`decode_once`);
#: a smaller one decodes in well under a second, several times over costs less than writing a copy
DECODE_ONCE_PIXELS = 16_000_000

#: ... and only while its uncompressed copy is at most this large: libvips maps a `.v` file whole, so
#: the copy's pages count in the process's resident memory (clean page cache, but RSS all the same).
#: Anything larger is streamed from the file by each lane: more decoding, flat memory.
DECODE_ONCE_MAX_BYTES = 512 * 2**20


@dataclass
class Lane:
    """Outputs made one after the other in one thread; `shared`: thumbnails made from the first one."""

    outputs: list[Output]
    weight: float
    shared: bool = False  # the first output's leading thumbnail is kept in memory for the others
    random: bool = False  # reads the source out of order (rotate, flip, split, ...)


def plan_lanes(source: Source, outputs: list[Output]) -> list[Lane]:
    """Group the image outputs into lanes, the heaviest first.

    A leading thumbnail smaller than the source (up to `CACHE_PIXELS`) joins the lane of
    its orientation, largest first: the first is read from the source (shrink-on-load)
    and kept in memory, the others are made from it. A full-size thumbnail is kept only
    when the rest of its chain needs random access; otherwise it streams, in its own lane.
    """
    shared: dict[bool, list[tuple[int, Output]]] = {}
    lanes: list[Lane] = []
    for output in outputs:
        lead = lead_thumbnail(output.steps)
        if lead is None:
            lanes.append(Lane([output], weight(output), random=needs_random_access(output.steps)))
            continue
        target = source.thumbnail_size(lead.width, lead.height, orient=lead.orient)
        random = needs_random_access(lead.rest)
        if target[0] * target[1] <= CACHE_PIXELS and (target != source.oriented_size(lead.orient) or random):
            shared.setdefault(lead.orient, []).append((target[0] * target[1], output))
            continue
        lanes.append(Lane([output], weight(output), random=random))
    for members in shared.values():
        members.sort(key=lambda member: -member[0])
        ordered = [output for _, output in members]
        lanes.append(Lane(ordered, sum(weight(o) for o in ordered), shared=True))
    lanes.sort(key=lambda lane: -lane.weight)
    return lanes


def decode_once(source: Source, lanes: list[Lane]) -> bool:
    """Whether to decode the source once first: a large flat image without shrink-on-load, which
    more lanes would decode than run at once, or which a chain reads out of order (libvips would
    then decode it whole for that chain, into memory or a temporary file of its own)."""
    if not lanes or source.shrinks_on_load or source.width * source.height < DECODE_ONCE_PIXELS:
        return False
    if not len(lanes) > PARALLEL_OUTPUTS and not any(lane.random for lane in lanes):
        return False
    header = source.header()
    return header is not None and decoded_bytes(header) <= DECODE_ONCE_MAX_BYTES


_SAMPLE_BYTES = {
    "uchar": 1,
    "char": 1,
    "ushort": 2,
    "short": 2,
    "uint": 4,
    "int": 4,
    "float": 4,
    "double": 8,
    "complex": 8,
    "dpcomplex": 16,
}


def decoded_bytes(image: pyvips.Image) -> int:
    return image.width * image.height * image.bands * _SAMPLE_BYTES.get(image.format, 8)


def weight(output: Output) -> float:
    if output.kind == "dzi":
        return 10.0
    lead = lead_thumbnail(output.steps)
    return 1.0 if lead is not None and lead.width <= 4096 else 6.0
