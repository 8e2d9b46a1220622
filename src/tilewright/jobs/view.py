"""What the API shows of a job: its JSON with server paths relative to their root, and whether a retry can help.

The job store records absolute paths (the worker reads them); the API, served with CORS `*`, never
shows where the server keeps its files: a path under the upload folder, the output root, an input
root or the work folder is shown relative to that root (`IMAGE_ID/slide.svs`, `COLLECTION/ID/slide.dzi`),
in every string of the job, error texts included.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tilewright.config import Settings
from tilewright.errors import InputError
from tilewright.paths import input_roots

JSON = dict[str, Any] | list[Any] | str | int | float | bool | None


def _subclasses(cls: type[InputError]) -> set[type[InputError]]:
    found: set[type[InputError]] = {cls}
    for sub in cls.__subclasses__():
        found |= _subclasses(sub)
    return found


def input_faults() -> set[str]:
    """The `error_type`s a job that failed for its input records (running it again cannot help): every
    `InputError` class, looked up when asked, so that one defined in a module imported later counts."""
    return {cls.__name__ for cls in _subclasses(InputError)}


def roots(settings: Settings) -> list[Path]:
    """The folders whose paths the API shows relative, the deepest first (a root inside another wins)."""
    found = {
        settings.resolved_upload_dir(),
        settings.resolved_output_root(),
        settings.work_root(),
        *input_roots(settings),
    }
    return sorted(found, key=lambda root: -len(str(root)))


class Relative:
    """Rewrites the paths under `roots` in any JSON value to paths relative to their root."""

    def __init__(self, settings: Settings) -> None:
        folders = [re.escape(str(root).rstrip("/")) for root in roots(settings)]
        # a root at the start of a string or after a space, quote or bracket; never inside a URL
        # (file:///ROOT/...) or a longer path (/elsewhere/ROOT/...)
        self.pattern = re.compile(rf"(?<![\w/:.-])(?:{'|'.join(folders)})(?:/|(?=[\s'\"),:]|$))")

    def text(self, value: str) -> str:
        return self.pattern.sub(lambda match: "" if match.group().endswith("/") else ".", value)

    def value(self, value: JSON) -> JSON:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value


def retryable(job: dict[str, Any]) -> bool:
    """A finished job that did not succeed, and did not fail for its input (a transient or write failure,
    a cancel, a worker lost): the page offers Retry only for these."""
    return job["state"] in ("failed", "cancelled") and job.get("error_type") not in input_faults()


def public_job(settings: Settings, job: dict[str, Any], relative: Relative | None = None) -> dict[str, Any]:
    """A job's JSON as the API shows it: paths relative to their root, and `retryable`."""
    shown = (relative or Relative(settings)).value(job)
    assert isinstance(shown, dict)
    shown["retryable"] = retryable(job)
    return shown
