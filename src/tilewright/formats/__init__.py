"""Readers, one per file, and the registry that picks one by content."""

import logging

import pyvips

from tilewright.formats.base import Level, SlideInfo, SlideReader
from tilewright.formats.registry import accepted_suffixes, available_readers, detect, open_slide

# libvips' operation cache hands back the *same* image object for the same file and options.
# tilewright attaches progress/kill handlers to the images it writes, so a cached image would
# carry a finished run's handler into the next run (and crash once that handler is freed).
# Open slides are kept by tilewright's own reader cache instead.
pyvips.cache_set_max(0)

# tifffile warns at length about every odd tag of a damaged file; our own error says it in one line
logging.getLogger("tifffile").setLevel(logging.CRITICAL)

__all__ = ["Level", "SlideInfo", "SlideReader", "accepted_suffixes", "available_readers", "detect", "open_slide"]
