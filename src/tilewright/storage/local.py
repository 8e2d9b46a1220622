"""Local disk: a folder (the configured `storage_root`, or an input root) holding keys as relative paths.

What differs from the object stores: paths are files (opened directly, etags from size and mtime, no
containers to create), hidden staging folders are never listed, and publishing is a real atomic rename:
the pyramid and its manifest are assembled in a staging folder beside the output and moved into place
in one step (`staging.publish_dir`), so there is no manifest-last upload order to keep.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from fsspec.implementations.local import LocalFileSystem

from tilewright.config import Settings
from tilewright.errors import CancelledError
from tilewright.staging import STAGING_PREFIX, make_staging, publish_dir, remove_staging
from tilewright.storage.base import BlobInfo, Storage
from tilewright.storage.keys import clean_key
from tilewright.storage.manifest import MANIFEST, build_manifest, encode_manifest, manifest_entry
from tilewright.storage.parallel import ProgressFn, no_progress


class LocalStorage(Storage):
    scheme = "file"

    @classmethod
    def from_settings(cls, settings: Settings, root: Path | None = None) -> LocalStorage:
        return cls(settings, root)

    def __init__(self, settings: Settings, root: Path | str | None = None) -> None:
        folder = Path(root) if root is not None else settings.resolved_storage_root()
        folder = folder.expanduser().resolve()
        super().__init__(LocalFileSystem(), settings, str(folder))
        self.folder = folder

    def full(self, key: str) -> str:
        key = clean_key(key)
        return str(self.folder / key) if key else str(self.folder)

    def url(self, key: str) -> str:
        return "file://" + quote(self.full(key))

    def describe(self) -> str:
        return f"file://{self.folder}"

    def _etag(self, detail: dict[str, Any]) -> tuple[str, str]:
        try:
            stat = os.stat(detail["name"])
        except (KeyError, OSError):
            return "", ""
        return f"{stat.st_size:x}-{stat.st_mtime_ns:x}", ""

    def ensure_container(self, key: str) -> None:
        """A key's folder, made when missing (every time: a folder is cheap to check, and may be deleted)."""
        Path(self.full(key)).parent.mkdir(parents=True, exist_ok=True)

    def _open_write(self, key: str) -> IO[bytes]:
        self.ensure_container(key)
        return open(self.full(key), "wb")

    def _open_read(self, key: str) -> IO[bytes]:
        return open(self.full(key), "rb")

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write-then-rename, so a reader never sees half a file."""
        target = Path(self.full(key))
        self.ensure_container(key)
        temp = target.with_name(f"{STAGING_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}")
        temp.write_bytes(data)
        os.replace(temp, target)

    def _put_file(self, local: Path, key: str) -> None:
        self.ensure_container(key)
        shutil.copyfile(local, self.full(key))

    def publish_pyramid(
        self,
        local_dir: Path,
        prefix: str,
        *,
        source: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        progress: ProgressFn = no_progress,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> dict[str, Any]:
        """Copy the folder and its manifest into a staging folder beside the output, then rename it into place."""
        prefix = clean_key(prefix)
        final = Path(self.full(prefix))
        staging = make_staging(final.parent, final.name)  # makes the parent; removes what a killed run left
        try:
            shutil.copytree(local_dir, staging, dirs_exist_ok=True)
            if cancelled():
                raise CancelledError("cancelled")
            files = sorted(p for p in staging.rglob("*") if p.is_file())
            entries = [manifest_entry(p, p.relative_to(staging).as_posix()) for p in files]
            manifest = build_manifest(prefix, self.url(prefix), entries, source, extra)
            (staging / MANIFEST).write_bytes(encode_manifest(manifest))
            publish_dir(staging, final)
            progress(len(entries), len(entries))
            return manifest
        finally:
            remove_staging(staging)  # gone already once published; what a failure left otherwise

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        for blob in super().list(prefix):
            if not any(part.startswith(STAGING_PREFIX) for part in blob.key.split("/")):
                yield blob
