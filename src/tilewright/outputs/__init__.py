"""Output writers, one per file: Deep Zoom, pyramidal TIFF, IIIF; `WRITERS` names them.

A new output kind is one `PyramidWriter` subclass in a file here plus one line in `WRITERS`;
`KINDS` (the CLI's `--to` choices, the job checks) follows from it.
"""

from tilewright.outputs.base import Plan, PyramidWriter, WriteOptions
from tilewright.outputs.dzi import DziWriter
from tilewright.outputs.iiif import IiifWriter
from tilewright.outputs.tiff import TiffWriter

WRITERS: dict[str, type[PyramidWriter]] = {
    "dzi": DziWriter,
    "tiff": TiffWriter,
    "iiif": IiifWriter,
}

#: every output kind, in `WRITERS`' order
KINDS: tuple[str, ...] = tuple(WRITERS)

__all__ = ["KINDS", "WRITERS", "Plan", "PyramidWriter", "WriteOptions"]
