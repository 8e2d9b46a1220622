"""The `Storage` interface, over fsspec: local disk, Azure Blob Storage, S3 (and S3-compatible stores).

A `Storage` names objects by *keys* (`storage.keys`): `container/dir/name` for Azure (the store is the
account), `bucket/dir/name` for S3, a path relative to the root for local disk. What every backend shares
lives here; a backend (`local`, `azure`, `s3`) overrides only what differs:

- every request retried on transient failures (`storage.retry`);
- streamed transfers: a download reads the object in `storage_chunk_bytes` ranges into a file, an upload
  writes a stream in chunks; memory stays a few chunks whatever the size;
- publishing a folder, manifest last (`storage.publish`), and reading its manifest (`storage.manifest`).
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from tilewright.config import Settings
from tilewright.errors import LimitExceededError, OutsideRootsError
from tilewright.storage.errors import BlobNotFoundError
from tilewright.storage.keys import clean_key, join_key
from tilewright.storage.manifest import MANIFEST, manifest_problems, parse_manifest
from tilewright.storage.parallel import ProgressFn, no_progress, run_parallel
from tilewright.storage.publish import publish_folder
from tilewright.storage.retry import translate, with_retries

T = TypeVar("T")


class FileSystem(Protocol):
    """The part of an fsspec filesystem the stores call. fsspec, adlfs and s3fs ship no types, so this is the
    one place their methods are described; `find` is always called with `detail=True`."""

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]: ...
    def find(self, path: str, *, detail: bool, **kwargs: Any) -> dict[str, dict[str, Any]]: ...
    def cat_file(self, path: str, **kwargs: Any) -> bytes: ...
    def pipe_file(self, path: str, value: bytes, **kwargs: Any) -> None: ...
    def rm_file(self, path: str) -> None: ...
    def exists(self, path: str, **kwargs: Any) -> bool: ...
    def mkdir(self, path: str, **kwargs: Any) -> None: ...
    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> IO[bytes]: ...
    def put_file(self, lpath: str, rpath: str, **kwargs: Any) -> None: ...
    def invalidate_cache(self, path: str | None = None) -> None: ...


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    etag: str
    version: str = ""

    @property
    def container(self) -> str:
        return self.key.split("/", 1)[0]


def strip_etag(value: object) -> str:
    """An etag without the quotes HTTP puts around it."""
    return str(value or "").strip().strip('"')


class Storage:
    """An fsspec filesystem with keys, streamed transfers, concurrent retried uploads and manifests."""

    scheme = ""

    @classmethod
    def from_settings(cls, settings: Settings, root: Path | None = None) -> Storage:
        """How `open_store` makes this store (its `STORES` line): a remote store needs only the settings,
        `root` is for the local one. Each store says how."""
        raise NotImplementedError(f"{cls.__name__} does not say how to open it (from_settings)")

    def key_from_url(self, url: str) -> str:
        """The key of an https URL naming a blob of this store; only Azure's blobs have such URLs."""
        raise OutsideRootsError(f"{url!r}: https URLs name blobs of the configured Azure account only")

    def __init__(self, fs: FileSystem, settings: Settings, root: str = "") -> None:
        self.fs = fs
        self.settings = settings
        self.root = root.rstrip("/")
        self.connections = settings.storage_connections
        self.retries = settings.storage_retries
        self.chunk = settings.storage_chunk_bytes
        self._containers: set[str] = set()  # known to exist (or not ours to create): asked once each
        self._containers_lock = threading.Lock()

    # -- naming --------------------------------------------------------------------------------
    def full(self, key: str) -> str:
        """The fsspec path of a key."""
        key = clean_key(key)
        return f"{self.root}/{key}" if self.root else key

    def url(self, key: str) -> str:
        """Canonical URL of a key: the same object always has the same URL (job keys hash it)."""
        return f"{self.scheme}://{clean_key(key)}"

    def describe(self) -> str:
        """Where this store is, without credentials (for logs and errors)."""
        return f"{self.scheme}://"

    def retry(self, fn: Callable[[], T], key: str, what: str) -> T:
        """Call `fn` (a request about `key`), retrying transient failures `storage_retries` times."""
        return with_retries(fn, retries=self.retries, url=lambda: self.url(key), what=what)

    # -- single objects ------------------------------------------------------------------------
    def _etag(self, detail: dict[str, Any]) -> tuple[str, str]:
        """(etag, version) from an fsspec info/listing entry."""
        return strip_etag(detail.get("etag") or detail.get("ETag")), str(
            detail.get("version_id") or detail.get("VersionId") or ""
        )

    def _key_of(self, full: str) -> str:
        full = full.strip("/")
        if self.root:
            root = self.root.strip("/")
            if full == root:
                return ""
            if full.startswith(root + "/"):
                return full[len(root) + 1 :]
        return full

    def info(self, key: str) -> BlobInfo:
        detail = self.retry(lambda: self.fs.info(self.full(key)), key, "info")
        if detail.get("type") == "directory":
            raise BlobNotFoundError(f"{self.url(key)} is a folder, not a blob")
        etag, version = self._etag(detail)
        return BlobInfo(clean_key(key), int(detail.get("size") or 0), etag, version)

    def exists(self, key: str) -> bool:
        try:
            self.info(key)
            return True
        except BlobNotFoundError:
            return False

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every object under `prefix` (recursively), with size and etag."""
        prefix = clean_key(prefix)
        target = self.full(prefix) if prefix else (self.root or "")
        try:
            found = self.retry(lambda: self.fs.find(target, detail=True), prefix, "list")
        except BlobNotFoundError:
            return
        for name, detail in sorted(found.items()):
            if detail.get("type") == "directory":
                continue
            etag, version = self._etag(detail)
            yield BlobInfo(self._key_of(name), int(detail.get("size") or 0), etag, version)

    def read_bytes(self, key: str) -> bytes:
        """A small object (a manifest) in memory; never used for blobs."""
        return self.retry(lambda: self.fs.cat_file(self.full(key)), key, "read")

    def write_bytes(self, key: str, data: bytes) -> None:
        self.retry(lambda: self.fs.pipe_file(self.full(key), data), key, "write")

    def delete(self, key: str) -> None:
        def remove() -> None:
            try:
                self.fs.rm_file(self.full(key))
            except FileNotFoundError:
                pass

        self.retry(remove, key, "delete")

    def delete_prefix(self, prefix: str) -> int:
        keys = [b.key for b in self.list(prefix)]
        run_parallel([partial(self.delete, key) for key in keys], self.connections)
        return len(keys)

    def ensure_container(self, key: str) -> None:
        """Make sure the container/bucket (or folder) a key lives in exists; asked once per container."""
        container = clean_key(key).split("/", 1)[0]
        with self._containers_lock:
            if container in self._containers:
                return
        try:
            if not self.fs.exists(container):
                self._create_container(container)
        except Exception:  # noqa: BLE001 - e.g. no right to create it: the upload itself will say what is wrong
            pass
        with self._containers_lock:
            self._containers.add(container)

    def _create_container(self, name: str) -> None:
        self.fs.mkdir(name)

    # -- streamed transfers --------------------------------------------------------------------
    def download(
        self, key: str, dest: Path, *, limit: int | None = None, progress: ProgressFn = no_progress
    ) -> BlobInfo:
        """Stream an object into `dest` chunk by chunk (restarting on a transient failure)."""
        info = self.info(key)
        most = self.settings.max_upload_bytes if limit is None else limit
        if info.size > most:
            raise LimitExceededError(
                f"{self.url(key)} has {info.size} bytes, over the limit of {most} (TILEWRIGHT_MAX_UPLOAD_BYTES)"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)

        def fetch() -> None:
            done = 0
            with self._open_read(key) as src, open(dest, "wb") as out:
                while chunk := src.read(self.chunk):
                    out.write(chunk)
                    done += len(chunk)
                    if done > most:
                        raise LimitExceededError(f"{self.url(key)} grew past the limit of {most} bytes")
                    progress(done, info.size)

        try:
            self.retry(fetch, key, "download")
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return info

    def _open_read(self, key: str) -> IO[bytes]:
        return self.fs.open(self.full(key), "rb", block_size=self.chunk, cache_type="none")

    def _open_write(self, key: str) -> IO[bytes]:
        return self.fs.open(self.full(key), "wb", block_size=self.chunk)

    def upload_stream(self, source: IO[bytes], key: str) -> int:
        """Write a stream (of unknown length) to an object chunk by chunk; not retried (a stream cannot rewind)."""
        self.ensure_container(key)
        total = 0
        try:
            with self._open_write(key) as out:
                while chunk := source.read(self.chunk):
                    out.write(chunk)
                    total += len(chunk)
        except Exception as exc:
            raise translate(exc, self.url(key)) from exc
        return total

    def upload_file(self, local: Path, key: str) -> None:
        self.retry(lambda: self._put_file(local, key), key, "upload")

    def _put_file(self, local: Path, key: str) -> None:
        self.fs.put_file(str(local), self.full(key))

    # -- published folders ---------------------------------------------------------------------
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
        """Upload a finished folder under `prefix`, manifest last (`publish.publish_folder`); returns the manifest."""
        return publish_folder(
            self, local_dir, prefix, source=source, extra=extra, progress=progress, cancelled=cancelled
        )

    def read_manifest(self, prefix: str) -> dict[str, Any] | None:
        """The manifest of the folder at `prefix`, or None: no manifest means no (finished) pyramid."""
        try:
            return parse_manifest(self.read_bytes(join_key(prefix, MANIFEST)))
        except BlobNotFoundError:
            return None

    # `builtins.list`: inside this class, `list` is the method above
    def verify_manifest(self, prefix: str) -> builtins.list[str]:
        """Problems of a published pyramid (missing or wrong-size files); empty when complete."""
        manifest = self.read_manifest(prefix)
        if manifest is None:
            return ["no manifest"]
        present = {b.key[len(prefix.strip("/")) + 1 :]: b.size for b in self.list(prefix)}
        return manifest_problems(manifest, present)
