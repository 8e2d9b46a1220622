"""The errors tilewright reports to users.

Every failure a user can cause (a bad file, a limit, an existing output) is a
`TilewrightError` with a one-line message. The CLI turns it into an exit code and
one line on stderr; the server turns it into a JSON 4xx. Anything else is a bug.
"""

from __future__ import annotations

import sys


class TilewrightError(Exception):
    """Base class: a problem the user can act on. `exit_code` is what the CLI returns."""

    exit_code = 2
    http_status = 400

    def __init__(self, message: str, *, path: object | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InputError(TilewrightError):
    """The input cannot be used: empty, corrupt, truncated or of an unsupported format."""


class OutsideRootsError(InputError):
    """A path outside the folders the server may read or write (the one path-sandbox rule, `paths`), or a URL
    outside the configured accounts, buckets and containers (`storage`): refused as forbidden, whatever it names."""

    http_status = 403


class InputNotFoundError(InputError):
    """A named input (a path inside the roots, an image id) that does not exist."""

    http_status = 404


class UnsupportedFormatError(InputError):
    """No reader recognised the file's content."""

    http_status = 415


class LimitExceededError(InputError):
    """A configured limit (pixels, bytes, time) refused the work."""

    http_status = 413


class ConfigError(TilewrightError):
    """A setting (a `TILEWRIGHT_*` variable or the TOML file) has a value tilewright cannot use."""

    exit_code = 2
    http_status = 500


class OutputExistsError(TilewrightError):
    """The output is already there and `--overwrite` was not given."""

    exit_code = 3
    http_status = 409


class OutputWriteError(TilewrightError):
    """Writing the output failed (disk full, permissions): not the input's fault."""

    exit_code = 1
    http_status = 500


class CancelledError(TilewrightError):
    """The work was cancelled or ran past its time limit; nothing was published."""

    exit_code = 4
    http_status = 408


def one_line(exc: BaseException, limit: int | None = 300) -> str:
    """An exception's text on one line, shortened to `limit` characters (None: whole), else its type's name."""
    return " ".join(str(exc).split())[:limit] or type(exc).__name__


#: the lines libvips puts in front of the reason, which say only which call failed ("unable to call
#: VipsForeignSaveJpegFile", "unable to copy to memory" from `copy_memory`): never the useful line
VIPS_WRAPPERS = ("unable to call", "unable to copy to memory")

#: what a libvips failure that is not the output's fault says about the input, whichever call met it
CORRUPT = "image data is corrupt or truncated"


def vips_reason(exc: BaseException, lines: int = 1, fallback: str = "libvips error") -> str:
    """The useful part of a pyvips error: its lines after the wrappers (`VIPS_WRAPPERS`), each once (libvips
    repeats a line when several threads meet the same fault), on one line."""
    text = dict.fromkeys(line.strip() for line in str(exc).splitlines() if line.strip())
    useful = [line for line in text if not line.startswith(VIPS_WRAPPERS)]
    return " ".join((useful or [fallback])[:lines])[:300]


#: what a libvips error says when the output could not be written (a full, read-only or forbidden disk).
#: Not "unable to write": libvips adds "vips2png: unable to write to target" when the *input* fails to
#: decode during a save, so it would blame the disk for a truncated file.
OUTPUT_FAULTS = ("no space left", "permission denied", "read-only", "disk quota")


def vips_error(
    exc: BaseException,
    doing: str = CORRUPT,
    *,
    source: object | None = None,
    output: object | None = None,
    lines: int = sys.maxsize,
) -> InputError | OutputWriteError:
    """A libvips failure as the error a user sees: the output's fault or the input's.

    `OutputWriteError("cannot write output: REASON", path=output)` when the reason names one of
    `OUTPUT_FAULTS`, else `InputError("DOING: REASON", path=source)`; REASON is `vips_reason`'s
    first `lines` useful lines. A caller whose reader kept a tile-read failure reports that first.
    """
    reason = vips_reason(exc, lines=lines)
    if any(words in reason.lower() for words in OUTPUT_FAULTS):
        return OutputWriteError(f"cannot write output: {reason}", path=output)
    return InputError(f"{doing}: {reason}", path=source)
