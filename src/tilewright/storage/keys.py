"""Keys: how every store names an object (`container/dir/name`), and the fields an output template uses.

A key is normalised once, here: forward slashes, no leading slash, no `.` or `..` segments, so no key
ever names something outside its store, whichever backend resolves it.
"""

from __future__ import annotations

import os
import posixpath

from tilewright.errors import OutsideRootsError

#: suffixes that are one extension: the stem of `slide.ome.tiff` is `slide`
_DOUBLE_SUFFIXES = (".ome.tiff", ".ome.tif")


def clean_key(key: str) -> str:
    """A normalised key: forward slashes, no leading slash, no `.`/`..` segments (never escapes the store)."""
    text = str(key).replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise OutsideRootsError(f"key {key!r} contains '..'")
    return "/".join(parts)


def join_key(*parts: str) -> str:
    """Keys (or key fragments) joined with `/`, empty parts skipped, the result `clean_key`ed."""
    return clean_key("/".join(p.strip("/") for p in parts if p))


def key_parts(key: str) -> dict[str, str]:
    """Template fields of a blob key: container, path (inside it), dir, name, stem."""
    container, _, path = clean_key(key).partition("/")
    name = posixpath.basename(path)
    stem = name
    for suffix in _DOUBLE_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    else:
        stem = os.path.splitext(name)[0] or name
    return {"container": container, "path": path, "dir": posixpath.dirname(path), "name": name, "stem": stem}
