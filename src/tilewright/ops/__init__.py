"""Image operations: small pure functions on a pyvips image, the one registry that names them, and chains.

`parse_chain` checks a chain of steps before any pixel is read (`registry.py`); `Source` opens
a file the cheapest way for a chain (`source.py`); `run_chain`/`apply_chain` run it (`chain.py`);
`encode`/`save` write the results (`encode.py`). Errors are `OperationError`s naming the step.

A new operation is one function (in a module here) plus one line in `registry.OPS`.
"""

from __future__ import annotations

from tilewright.ops.base import OperationError, ParamError, Step
from tilewright.ops.chain import MAX_IMAGES, apply_chain, run_chain
from tilewright.ops.encode import Encoded, available_formats, encode, have_avif, output_format, save
from tilewright.ops.registry import (
    ALIASES,
    MAX_STEPS,
    OPS,
    Op,
    StepSpec,
    needs_random_access,
    parse_chain,
    parse_step,
)
from tilewright.ops.source import LeadThumbnail, Source, lead_thumbnail

__all__ = [
    "ALIASES",
    "MAX_IMAGES",
    "MAX_STEPS",
    "OPS",
    "Encoded",
    "LeadThumbnail",
    "Op",
    "OperationError",
    "ParamError",
    "Source",
    "Step",
    "StepSpec",
    "apply_chain",
    "available_formats",
    "encode",
    "have_avif",
    "lead_thumbnail",
    "needs_random_access",
    "output_format",
    "parse_chain",
    "parse_step",
    "run_chain",
    "save",
]
