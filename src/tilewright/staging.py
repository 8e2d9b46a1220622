"""Staging folders and atomic publishing on local disk, shared by every writer (no pyvips here).

Nothing is written at its final path: a writer makes a private staging folder beside the output (same
filesystem, so the last step is a `rename`), and publishes it with `os.replace` when it is complete. A
killed run leaves at most a hidden staging folder named after its process; the next run of the same
output removes it once that process is gone (`pid_alive`, also the job store's liveness test).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from pathlib import Path

STAGING_PREFIX = ".tw-staging-"
# what follows `STAGING_PREFIX + name + "-"` in the folders made here: the owner's pid, then a random tag
# (`old-` marks an older copy moved aside by `publish_dir`); anything else is not ours to remove
_OWNED = re.compile(r"(\d+)-(?:old-)?[0-9a-f]{8}")


def _owned_name(name: str, tag: str = "") -> str:
    """`STAGING_PREFIX` + output name + this process's pid + a random tag: hidden, and removable by
    `_remove_stale_staging` once this process is gone."""
    return f"{STAGING_PREFIX}{name}-{os.getpid()}-{tag}{uuid.uuid4().hex[:8]}"


def make_staging(parent: Path, name: str) -> Path:
    """A new private staging folder for output `name` beside it, after removing dead runs' staging."""
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(parent, name)
    staging = parent / _owned_name(name)
    staging.mkdir()
    return staging


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_stale_staging(parent: Path, name: str) -> None:
    """Remove staging left by a run of this same output that was killed (its process is gone)."""
    for entry in parent.glob(f"{STAGING_PREFIX}{name}-*"):
        # the full match keeps other outputs' staging (output `s-1` of output `s`) and temp files out
        owned = _OWNED.fullmatch(entry.name[len(STAGING_PREFIX) + len(name) + 1 :])
        if owned is None:
            continue
        pid = int(owned.group(1))
        if pid != os.getpid() and not pid_alive(pid):
            _remove(entry)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host; a process we may not signal (PermissionError) still exists.

    The one liveness test for both staging folders and job owners: they name their process by pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_staging(staging: Path) -> None:
    """Remove a staging folder (or a file moved aside), whatever is in it."""
    _remove(staging)


def publish_dir(staged: Path, final: Path) -> None:
    """Move a finished folder into place atomically; an older copy (an earlier attempt, or the version being
    replaced) is moved aside first and removed once the new one is in place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if final.exists():
        # beside `final` (the same filesystem, so a rename) under a name of its own: two publishes in one
        # process never share it, and a kill before the removal leaves hidden staging the next run removes
        old = final.parent / _owned_name(final.name, "old-")
        os.replace(final, old)
    try:
        os.replace(staged, final)
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # a staging folder on another filesystem is copied instead
            raise
        shutil.move(str(staged), str(final))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
