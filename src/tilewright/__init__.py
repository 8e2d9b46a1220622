"""tilewright: turn images and whole-slide scans into web-ready tile pyramids, and serve them."""

__version__ = "0.1.0"
