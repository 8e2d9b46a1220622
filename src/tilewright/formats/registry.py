"""Pick a reader by content, through an ordered list of checkers (like Cytomine PIMS).

The order comes from `Settings.format_checkers` (most specific first). Third-party
readers register a `SlideReader` subclass in the `tilewright.formats` entry-point
group and are tried after the built-in ones, or wherever their name is put in the
configured order. A new built-in format is one new file plus one line in `_BUILTIN`.
"""

from __future__ import annotations

import logging
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path

from tilewright.config import Settings, get_settings
from tilewright.errors import InputError, UnsupportedFormatError, one_line
from tilewright.formats.base import SlideReader

log = logging.getLogger(__name__)

_BUILTIN = {
    "dicom": "tilewright.formats.dicom:DicomReader",
    "openslide": "tilewright.formats.openslide:OpenSlideReader",
    "ometiff": "tilewright.formats.ometiff:OmeTiffReader",
    "vips": "tilewright.formats.vips:VipsReader",
}


_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
_OPENSLIDE_INDEX_SUFFIXES = (".mrxs", ".vms", ".vmu", ".svslide")  # index files OpenSlide knows by name


def _might_be(name: str, path: Path, head: bytes) -> bool:
    """A built-in reader's checker could accept this file: decided from the first bytes, without importing it.

    Only a cheap first cut (the checker itself decides), so that a JPEG never loads OpenSlide or wsidicom.
    """
    if name == "dicom":
        return path.is_dir() or head[128:132] == b"DICM"
    if name == "openslide":  # TIFF-based formats, DICOM, and index files
        return head[:4] in _TIFF_MAGIC or head[128:132] == b"DICM" or path.suffix.lower() in _OPENSLIDE_INDEX_SUFFIXES
    if name == "ometiff":
        return head[:4] in _TIFF_MAGIC
    return True


def _load(spec: str) -> type[SlideReader]:
    module, _, attr = spec.partition(":")
    return getattr(import_module(module), attr)


def available_readers() -> dict[str, str]:
    """Every reader name known: the built-in ones and the entry-point plug-ins."""
    found = dict(_BUILTIN)
    for ep in entry_points(group="tilewright.formats"):
        found.setdefault(ep.name, ep.value)
    return found


def _ordered_names(settings: Settings) -> list[tuple[str, str]]:
    """(name, 'module:Class') in checking order: the configured order, then the plug-ins."""
    known = available_readers()
    names = list(settings.format_checkers) + [n for n in known if n not in _BUILTIN and n not in settings.format_checkers]
    for name in names:
        if name not in known:
            raise ValueError(f"unknown format checker {name!r} in format_checkers; known: {', '.join(known)}")
    return [(name, known[name]) for name in names]


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(4096)


def detect(path: str | Path, settings: Settings | None = None) -> type[SlideReader]:
    """The first reader whose checker accepts the file's content."""
    settings = settings or get_settings()
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path=path)
    head = b""
    if path.is_file():
        if path.stat().st_size == 0:
            raise InputError("file is empty", path=path)
        try:
            head = _head(path)
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", path=path) from exc
    for name, spec in _ordered_names(settings):
        if name in _BUILTIN and not _might_be(name, path, head):
            continue
        reader = _load(spec)  # imported only when its turn comes: a JPEG never imports OpenSlide
        try:
            if reader.check(path, head):
                return reader
        except Exception as exc:  # noqa: BLE001 - a broken checker must not stop the others
            log.debug("checker %s failed on %s: %s", name, path, exc)
    raise UnsupportedFormatError("not an image or slide format tilewright reads", path=path)


def open_slide(path: str | Path, settings: Settings | None = None, *, check_limits: bool = True) -> SlideReader:
    """Open `path` with the right reader; refuse it now if it is over the pixel limits."""
    settings = settings or get_settings()
    reader_cls = detect(path, settings)
    try:
        reader = reader_cls(Path(path), settings)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any library error on open is a bad input
        raise InputError(f"cannot open as {reader_cls.name}: {one_line(exc)}", path=path) from exc
    if check_limits:
        try:
            reader.check_limits()
        except InputError:
            reader.close()
            raise
    return reader

