"""Readers, one per file, and the registry that picks one by content."""

import logging

# tifffile warns at length about every odd tag of a damaged file; our own error says it in one line
logging.getLogger("tifffile").setLevel(logging.CRITICAL)

from tilewright.formats.base import Level, SlideInfo, SlideReader
from tilewright.formats.registry import available_readers, detect, open_slide

__all__ = ["Level", "SlideInfo", "SlideReader", "available_readers", "detect", "open_slide"]
