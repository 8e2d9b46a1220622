"""The manifest: the one document that says a published folder is complete (`manifest.json`, written last).

It lists every file with its size and sha256, the source it was made from and what the job adds (`extra`).
Every backend writes it with `build_manifest` + `encode_manifest`, and every reader (the stores'
`read_manifest`, the tile server's pre-built pyramids) reads it with `parse_manifest`: a folder without a
valid manifest is not published, whatever else is in it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "tilewright-manifest/1"


class ManifestEntry(TypedDict):
    """A manifest's line for one file: its path under the prefix, size and sha256 (hex)."""

    path: str
    size: int
    sha256: str


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read 1 MiB at a time (pyramid tiles and multi-GB slides alike)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(2**20):
            digest.update(block)
    return digest.hexdigest()


def manifest_entry(path: Path, name: str) -> ManifestEntry:
    """A manifest's line for the file at `path`, published as `name` under the prefix: size and sha256 let a
    reader check what it fetched."""
    return {"path": name, "size": path.stat().st_size, "sha256": file_sha256(path)}


def build_manifest(
    prefix: str,
    url: str,
    entries: list[ManifestEntry],
    source: dict[str, Any] | None,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    """The manifest of the folder at `prefix` (canonical `url`) whose files are `entries` (in path order)."""
    return {
        "format": MANIFEST_FORMAT,
        "prefix": prefix,
        "url": url,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source or {},
        "files": entries,
        "file_count": len(entries),
        "bytes": sum(e["size"] for e in entries),
        **(extra or {}),
    }


def encode_manifest(manifest: Mapping[str, Any]) -> bytes:
    """A manifest's bytes: one encoding, whichever backend writes it."""
    return json.dumps(manifest, indent=1).encode()


def parse_manifest(data: bytes) -> dict[str, Any] | None:
    """The manifest in `data`, or None when it is not JSON or not a tilewright manifest (not published)."""
    try:
        manifest = json.loads(data)
    except ValueError:  # UnicodeDecodeError included
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT else None


def manifest_problems(manifest: Mapping[str, Any], present: Mapping[str, int]) -> list[str]:
    """What is wrong with a published folder whose files (path under the prefix -> size) are `present`:
    files the manifest lists that are missing or of another size; empty when complete."""
    problems = []
    for entry in manifest["files"]:
        if entry["path"] not in present:
            problems.append(f"missing {entry['path']}")
        elif present[entry["path"]] != entry["size"]:
            problems.append(f"size of {entry['path']}: {present[entry['path']]} != {entry['size']}")
    return problems
