"""Output writers, one per file: Deep Zoom, pyramidal TIFF, IIIF."""

from tilewright.outputs.base import Plan, PyramidWriter, WriteOptions
from tilewright.outputs.dzi import DziWriter
from tilewright.outputs.iiif import IiifWriter
from tilewright.outputs.tiff import TiffWriter

WRITERS: dict[str, type[PyramidWriter]] = {
    "dzi": DziWriter,
    "tiff": TiffWriter,
    "iiif": IiifWriter,
}

__all__ = ["WRITERS", "Plan", "PyramidWriter", "WriteOptions"]
