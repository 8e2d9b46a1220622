"""Pick a reader by content, through an ordered list of checkers (like Cytomine PIMS).

The order is `_BUILTIN`'s (most specific first), or `Settings.format_checkers` when it names
the built-in readers to try (one left out is off); third-party readers register a `SlideReader`
subclass in the `tilewright.formats` entry-point group and are tried after those, unless named.
A resolution order file (`Settings.checker_resolution_file`, PIMS's `checkerResolution.csv`) then
moves checkers by their number, lowest first, keeping that order among equals.
A new built-in format is one new file plus one line in `_BUILTIN`; the file suffixes uploads
and imports accept follow from the readers' `suffixes`.

One `Probe` is made per file: the checkers and the chosen reader's constructor share it,
so the first bytes are read once and a TIFF is parsed by tifffile at most once.
"""

from __future__ import annotations

import functools
import logging
import sys
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from tilewright.config import Settings, get_settings
from tilewright.config.checkers import resolution_orders
from tilewright.errors import InputError, UnsupportedFormatError, one_line
from tilewright.formats.base import SlideReader

if TYPE_CHECKING:
    import tifffile

log = logging.getLogger(__name__)

_BUILTIN = {
    "dicom": "tilewright.formats.dicom:DicomReader",
    "openslide": "tilewright.formats.openslide:OpenSlideReader",
    "ometiff": "tilewright.formats.ometiff:OmeTiffReader",
    "vips": "tilewright.formats.vips:VipsReader",
}


HEAD_BYTES = 4096  # what a checker gets of the file (`SlideReader.check`'s `head`)
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
_OPENSLIDE_INDEX_SUFFIXES = (".mrxs", ".vms", ".vmu", ".svslide")  # index files OpenSlide knows by name


def read_head(path: Path) -> bytes:
    """The first `HEAD_BYTES` of a file, as the checkers get them; `OSError` if it cannot be read."""
    with open(path, "rb") as handle:
        return handle.read(HEAD_BYTES)


def is_tiff(head: bytes) -> bool:
    """TIFF or BigTIFF, either byte order."""
    return head[:4] in _TIFF_MAGIC


def is_dicom(head: bytes) -> bool:
    """A DICOM file: "DICM" after the 128-byte preamble."""
    return head[128:132] == b"DICM"


class Probe:
    """One file being detected: its first bytes, and its tifffile parse, made at most once.

    A TIFF is looked inside by the OME-TIFF checker and then by the reader that wins (the
    OME-TIFF or the vips reader): one parse serves both. A reader that keeps the handle
    open takes it (`take_tiff`); closing the probe closes a handle nobody took.
    """

    def __init__(self, path: Path, head: bytes = b"") -> None:
        self.path = path
        self.head = head
        self._tiff: tifffile.TiffFile | None = None
        self._tiff_error: Exception | None = None

    def tiff(self) -> tifffile.TiffFile:
        """The file as tifffile parsed it, kept open; what tifffile raised, again, if it could not."""
        if self._tiff_error is not None:
            raise self._tiff_error
        if self._tiff is None:
            import tifffile  # here: a JPEG or PNG never needs it (with numpy, a seventh of a second to import)

            try:
                self._tiff = tifffile.TiffFile(self.path)
            except Exception as exc:
                self._tiff_error = exc
                raise
        return self._tiff

    def take_tiff(self) -> tifffile.TiffFile:
        """The tifffile handle, now the caller's to close: the probe forgets it."""
        tif = self.tiff()
        self._tiff = None
        return tif

    def close(self) -> None:
        if self._tiff is not None:
            self._tiff.close()
            self._tiff = None

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _might_be(name: str, path: Path, head: bytes) -> bool:
    """A built-in reader's checker could accept this file: decided from the first bytes, without importing it.

    Only a cheap first cut (the checker itself decides), so that a JPEG never loads OpenSlide or wsidicom.
    """
    if name == "dicom":
        return path.is_dir() or is_dicom(head)
    if name == "openslide":  # TIFF-based formats, DICOM, and index files
        return is_tiff(head) or is_dicom(head) or path.suffix.lower() in _OPENSLIDE_INDEX_SUFFIXES
    if name == "ometiff":
        return is_tiff(head)
    return True


def _load(spec: str) -> type[SlideReader]:
    module, _, attr = spec.partition(":")
    return getattr(import_module(module), attr)


def available_readers() -> dict[str, str]:
    """Every reader name known: the built-in ones and the entry-point plug-ins."""
    found = dict(_BUILTIN)
    for name, spec in _plugins(tuple(sys.path)):
        found.setdefault(name, spec)
    return found


@functools.lru_cache(maxsize=4)
def _plugins(search_path: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The `tilewright.formats` entry points installed on `search_path`: asked once per path, not per open
    (scanning every installed distribution's metadata took 15 ms, most of opening a slide)."""
    return tuple((ep.name, ep.value) for ep in entry_points(group="tilewright.formats"))


def _ordered_names(settings: Settings) -> list[tuple[str, str]]:
    """(name, 'module:Class') in checking order: the configured order, then every other reader (built-in
    first, then plug-ins): a reader left out of the setting is tried last, never skipped."""
    known = available_readers()
    # empty: every built-in reader in `_BUILTIN`'s order (a new one is tried without a settings change);
    # a list names the built-in readers to try (one left out is off); plug-ins come after unless named
    chosen = list(settings.format_checkers) or list(_BUILTIN)
    names = chosen + [n for n in known if n not in _BUILTIN and n not in chosen]
    for name in names:
        if name not in known:
            raise ValueError(f"unknown format checker {name!r} in format_checkers; known: {', '.join(known)}")
    if settings.checker_resolution_file is not None:
        # PIMS's rule: lowest first, a reader not in the file is 0; sorted() is stable, so equals keep the order
        orders = resolution_orders(settings.checker_resolution_file)
        names.sort(key=lambda name: orders.get(name, 0))
    return [(name, known[name]) for name in names]


@functools.lru_cache(maxsize=4)
def _suffixes(search_path: tuple[str, ...]) -> frozenset[str]:
    suffixes: set[str] = set()
    for name, spec in available_readers().items():
        try:
            suffixes.update(s.lower() for s in _load(spec).suffixes)
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must not stop uploads of other formats
            log.warning("reader %s cannot be loaded: %s", name, one_line(exc))
    return frozenset(suffixes)


def accepted_suffixes() -> frozenset[str]:
    """Every file suffix a reader declares (`SlideReader.suffixes`): what uploads and `tilewright import` take.

    Loads every reader class (OpenSlide, tifffile, ... included), once per search path.
    """
    return _suffixes(tuple(sys.path))


def _probe(path: Path) -> Probe:
    """A probe of `path` with its first bytes (none for a folder); `InputError` if missing, empty or unreadable."""
    if not path.exists():
        raise InputError("no such file", path=path)
    head = b""
    if path.is_file():
        if path.stat().st_size == 0:
            raise InputError("file is empty", path=path)
        try:
            head = read_head(path)
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", path=path) from exc
    return Probe(path, head)


def _choose(probe: Probe, settings: Settings) -> type[SlideReader]:
    """The first reader, in checking order, whose checker accepts the probed file."""
    for name, spec in _ordered_names(settings):
        if name in _BUILTIN and not _might_be(name, probe.path, probe.head):
            continue
        reader = _load(spec)  # imported only when its turn comes: a JPEG never imports OpenSlide
        try:
            if reader.accepts(probe):
                return reader
        except Exception as exc:  # noqa: BLE001 - a broken checker must not stop the others
            log.debug("checker %s failed on %s: %s", name, probe.path, exc)
    raise UnsupportedFormatError("not an image or slide format tilewright reads", path=probe.path)


def detect(path: str | Path, settings: Settings | None = None) -> type[SlideReader]:
    """The first reader whose checker accepts the file's content."""
    settings = settings or get_settings()
    with _probe(Path(path)) as probe:
        return _choose(probe, settings)


def open_slide(path: str | Path, settings: Settings | None = None, *, check_limits: bool = True) -> SlideReader:
    """Open `path` with the right reader; refuse it now if it is over the pixel limits."""
    settings = settings or get_settings()
    with _probe(Path(path)) as probe:
        reader_cls = _choose(probe, settings)
        try:
            reader = reader_cls.from_probe(probe, settings)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot open as {reader_cls.name}: {one_line(exc)}", path=path) from exc
    if check_limits:
        try:
            reader.check_limits()
        except InputError:
            reader.close()
            raise
    return reader
