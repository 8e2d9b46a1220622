"""Publishing a finished folder to an object store so that a reader never sees half of it.

The order is the protocol: the old manifest goes first (the older version stops looking finished), the
tiles next (in parallel), the marker files a viewer opens (`.dzi`, `.xml`, `info.json`) after them, and
`manifest.json` (files, sizes, sha256, source) last; objects the new manifest does not list (an older
version, a crashed attempt) are removed once it is in place. Local disk publishes by rename instead
(`local.LocalStorage.publish_pyramid`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tilewright.errors import CancelledError
from tilewright.storage.keys import clean_key, join_key
from tilewright.storage.manifest import MANIFEST, ManifestEntry, build_manifest, encode_manifest, manifest_entry
from tilewright.storage.parallel import ProgressFn, no_progress, run_parallel

if TYPE_CHECKING:  # a type only: base.Storage.publish_pyramid calls publish_folder
    from tilewright.storage.base import Storage

log = logging.getLogger(__name__)

MARKER_SUFFIXES = (".dzi", ".xml")  # written after the tiles: a viewer opening them finds every tile
MARKER_NAMES = ("info.json",)


def is_marker(path: Path) -> bool:
    """Whether a viewer opens this file first (so it goes up after the tiles it names)."""
    return path.name in MARKER_NAMES or path.suffix in MARKER_SUFFIXES


def publish_folder(
    store: Storage,
    local_dir: Path,
    prefix: str,
    *,
    source: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    progress: ProgressFn = no_progress,
    cancelled: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Upload a finished folder under `prefix`, manifest last; returns the manifest."""
    prefix = clean_key(prefix)
    files = sorted(p for p in local_dir.rglob("*") if p.is_file())
    rel = {p: p.relative_to(local_dir).as_posix() for p in files}
    markers = [p for p in files if is_marker(p)]
    tiles = [p for p in files if p not in markers]
    entries: dict[str, ManifestEntry] = {}
    lock = threading.Lock()
    store.ensure_container(join_key(prefix, MANIFEST))
    store.delete(join_key(prefix, MANIFEST))  # an older version stops looking finished now

    def put(path: Path) -> Callable[[], None]:
        def call() -> None:
            if cancelled():
                raise CancelledError("cancelled")
            entry = manifest_entry(path, rel[path])
            store.upload_file(path, join_key(prefix, rel[path]))
            with lock:
                entries[rel[path]] = entry

        return call

    run_parallel([put(p) for p in tiles], store.connections, lambda d, t: progress(d, len(files)))
    run_parallel([put(p) for p in markers], store.connections, lambda d, t: progress(len(tiles) + d, len(files)))
    manifest = build_manifest(prefix, store.url(prefix), [entries[rel[p]] for p in files], source, extra)
    store.write_bytes(join_key(prefix, MANIFEST), encode_manifest(manifest))
    remove_leftovers(store, prefix, {rel[p] for p in files})
    return manifest


def remove_leftovers(store: Storage, prefix: str, keep: set[str]) -> None:
    """Remove objects under prefix that the manifest does not list (an older version, a crashed attempt)."""
    stale = []
    for blob in store.list(prefix):
        name = blob.key[len(prefix) + 1 :] if prefix else blob.key
        if name != MANIFEST and name not in keep:
            stale.append(blob.key)
    if stale:
        log.info("removing %d leftover object(s) under %s", len(stale), store.url(prefix))
        run_parallel([partial(store.delete, key) for key in stale], store.connections)
