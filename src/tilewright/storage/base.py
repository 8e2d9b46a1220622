"""One storage interface over fsspec: local disk, Azure Blob Storage, S3 (and S3-compatible stores).

A `Storage` names objects by *keys*: `container/dir/name` for Azure (the store is the
account), `bucket/dir/name` for S3, a path relative to the root for local disk. What
every backend shares lives here:

- streamed transfers: a download reads the object in `storage_chunk_bytes` ranges into a
  file, an upload writes a stream in chunks; memory stays a few chunks whatever the size;
- concurrent upload of a folder (a pyramid's tens of thousands of tiles) with
  `storage_connections` workers, each request retried with backoff when it fails for a
  transient reason (timeouts, connection resets, 408/429/5xx);
- the publish protocol: the old manifest goes first, the tiles next, the marker files
  (`.dzi`, `info.json`) after them and `manifest.json` (files, sizes, sha256, source etag)
  last, so a reader that trusts only the manifest never sees half a pyramid; leftovers of
  older versions are removed after the new manifest is in place.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import posixpath
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from tilewright.config import Settings
from tilewright.errors import InputError, TilewrightError, one_line

log = logging.getLogger(__name__)
T = TypeVar("T")


MANIFEST = "manifest.json"
MANIFEST_FORMAT = "tilewright-manifest/1"
MARKER_SUFFIXES = (".dzi", ".xml")  # written after the tiles: a viewer opening them finds every tile
MARKER_NAMES = ("info.json",)
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_TRANSIENT_ERRNO = {
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ETIMEDOUT,
    errno.EPIPE,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EAGAIN,
}


class StorageError(TilewrightError):
    """The store failed (unreachable, throttling, 5xx) after every retry: worth trying the job again later."""

    exit_code = 1
    http_status = 503


class BlobNotFoundError(InputError):
    """The named object does not exist (deleted after its event, or a wrong URL)."""

    http_status = 404


class ForbiddenSourceError(InputError):
    """A URL or path outside the configured accounts, buckets, containers or roots."""

    http_status = 403


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    etag: str
    version: str = ""

    @property
    def container(self) -> str:
        return self.key.split("/", 1)[0]


ProgressFn = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    return None


def clean_key(key: str) -> str:
    """A normalised key: forward slashes, no leading slash, no `.`/`..` segments (never escapes the store)."""
    text = str(key).replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ForbiddenSourceError(f"key {key!r} contains '..'")
    return "/".join(parts)


def join_key(*parts: str) -> str:
    return clean_key("/".join(p.strip("/") for p in parts if p))


def strip_etag(value: Any) -> str:
    return str(value or "").strip().strip('"')


class Storage:
    """An fsspec filesystem with keys, streamed transfers, concurrent retried uploads and manifests."""

    scheme = ""

    def __init__(self, fs, settings: Settings, root: str = "") -> None:
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

    # -- errors and retries --------------------------------------------------------------------
    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(
            exc,
            (
                FileNotFoundError,
                PermissionError,
                FileExistsError,
                IsADirectoryError,
                NotADirectoryError,
                TilewrightError,
            ),
        ):
            return False
        if isinstance(exc, (TimeoutError, ConnectionError)):
            return True
        status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
        if isinstance(status, int) and status in _TRANSIENT_STATUS:
            return True
        if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNO:
            return True
        name = type(exc).__name__
        return name in {
            "ServiceRequestError",
            "ServiceResponseError",
            "ClientConnectorError",
            "ClientOSError",
            "ServerDisconnectedError",
            "ClientPayloadError",
            "ServerTimeoutError",
            "EndpointConnectionError",
            "ConnectTimeoutError",
            "ReadTimeoutError",
            "ResponseStreamingError",
            "IncompleteReadError",
        }

    def translate(self, exc: BaseException, key: str) -> BaseException:
        """A user-facing error for a failure that is not worth retrying (or no longer)."""
        if isinstance(exc, TilewrightError):
            return exc
        if isinstance(exc, FileNotFoundError):
            return BlobNotFoundError(f"{self.url(key)} does not exist")
        if isinstance(exc, PermissionError):
            return ForbiddenSourceError(f"{self.url(key)}: access denied ({_one_line(exc)})")
        return StorageError(f"{self.url(key)}: {type(exc).__name__}: {_one_line(exc)}")

    def retry(self, fn: Callable[[], T], key: str, what: str) -> T:
        """Call `fn`, retrying transient failures `storage_retries` times with jittered exponential backoff."""
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                if not self.is_transient(exc) or attempt >= self.retries:
                    raise self.translate(exc, key) from exc
                attempt += 1
                delay = min(8.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random())
                log.warning(
                    "%s %s: %s: %s; retry %d/%d in %.1f s",
                    what,
                    self.url(key),
                    type(exc).__name__,
                    _one_line(exc),
                    attempt,
                    self.retries,
                    delay,
                )
                time.sleep(delay)

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
        self._parallel([(lambda k=k: self.delete(k)) for k in keys])
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
        self, key: str, dest: Path, *, limit: int | None = None, progress: ProgressFn = _no_progress
    ) -> BlobInfo:
        """Stream an object into `dest` chunk by chunk (restarting on a transient failure)."""
        info = self.info(key)
        limit = self.settings.max_upload_bytes if limit is None else limit
        if info.size > limit:
            from tilewright.errors import LimitExceededError

            raise LimitExceededError(
                f"{self.url(key)} has {info.size} bytes, over the limit of {limit} (TILEWRIGHT_MAX_UPLOAD_BYTES)"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)

        def fetch() -> None:
            done = 0
            with self._open_read(key) as src, open(dest, "wb") as out:
                while chunk := src.read(self.chunk):
                    out.write(chunk)
                    done += len(chunk)
                    if done > limit:
                        from tilewright.errors import LimitExceededError

                        raise LimitExceededError(f"{self.url(key)} grew past the limit of {limit} bytes")
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
            raise self.translate(exc, key) from exc
        return total

    def upload_file(self, local: Path, key: str) -> None:
        self.retry(lambda: self._put_file(local, key), key, "upload")

    def _put_file(self, local: Path, key: str) -> None:
        self.fs.put_file(str(local), self.full(key))

    def _parallel(self, calls: list[Callable[[], Any]], progress: ProgressFn = _no_progress) -> None:
        """Run calls on `storage_connections` threads; the first failure stops the rest and is raised."""
        if not calls:
            return
        done = 0
        lock = threading.Lock()
        total = len(calls)
        stop = threading.Event()

        def run(call: Callable[[], Any]) -> None:
            nonlocal done
            if stop.is_set():
                return
            call()
            with lock:
                done += 1
                count = done
            progress(count, total)

        with ThreadPoolExecutor(max_workers=min(self.connections, total), thread_name_prefix="tw-store") as pool:
            futures = [pool.submit(run, c) for c in calls]
            finished, _pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in finished if f.exception() is not None]
            if failed:
                stop.set()
                for future in futures:
                    future.cancel()
                raise failed[0].exception()  # type: ignore[misc]

    # -- pyramids and manifests ---------------------------------------------------------------------
    def publish_pyramid(
        self,
        local_dir: Path,
        prefix: str,
        *,
        source: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        progress: ProgressFn = _no_progress,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> dict[str, Any]:
        """Upload a finished folder under `prefix`, manifest last; returns the manifest."""
        prefix = clean_key(prefix)
        files = sorted(p for p in local_dir.rglob("*") if p.is_file())
        rel = {p: p.relative_to(local_dir).as_posix() for p in files}
        markers = [p for p in files if p.name in MARKER_NAMES or p.suffix in MARKER_SUFFIXES]
        tiles = [p for p in files if p not in markers]
        entries: dict[str, dict[str, Any]] = {}
        lock = threading.Lock()
        self.ensure_container(join_key(prefix, MANIFEST))
        self.delete(join_key(prefix, MANIFEST))  # an older version stops looking finished now

        def put(path: Path) -> Callable[[], None]:
            def call() -> None:
                if cancelled():
                    from tilewright.errors import CancelledError

                    raise CancelledError("cancelled")
                entry = manifest_entry(path, rel[path])
                self.upload_file(path, join_key(prefix, rel[path]))
                with lock:
                    entries[rel[path]] = entry

            return call

        self._parallel([put(p) for p in tiles] + [], progress=lambda d, t: progress(d, len(files)))
        self._parallel([put(p) for p in markers], progress=lambda d, t: progress(len(tiles) + d, len(files)))
        manifest = self.build_manifest(prefix, [entries[rel[p]] for p in files], source, extra)
        self.write_manifest(prefix, manifest)
        self._remove_leftovers(prefix, {rel[p] for p in files})
        return manifest

    def build_manifest(
        self, prefix: str, entries: list[dict[str, Any]], source: dict[str, Any] | None, extra: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The manifest of the pyramid at `prefix` whose files are `entries` (`manifest_entry`s, in path order);
        every backend's publish writes this same document, so readers need to know only one."""
        prefix = clean_key(prefix)
        return {
            "format": MANIFEST_FORMAT,
            "prefix": prefix,
            "url": self.url(prefix),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": source or {},
            "files": entries,
            "file_count": len(entries),
            "bytes": sum(e["size"] for e in entries),
            **(extra or {}),
        }

    def write_manifest(self, prefix: str, manifest: dict[str, Any]) -> None:
        self.write_bytes(join_key(prefix, MANIFEST), encode_manifest(manifest))

    def _remove_leftovers(self, prefix: str, keep: set[str]) -> None:
        """Objects under prefix that the manifest does not list (an older version, a crashed attempt)."""
        stale = []
        for blob in self.list(prefix):
            name = blob.key[len(prefix) + 1 :] if prefix else blob.key
            if name != MANIFEST and name not in keep:
                stale.append(blob.key)
        if stale:
            log.info("removing %d leftover object(s) under %s", len(stale), self.url(prefix))
            self._parallel([(lambda k=k: self.delete(k)) for k in stale])

    def read_manifest(self, prefix: str) -> dict[str, Any] | None:
        """The manifest of the pyramid at `prefix`, or None: no manifest means no (finished) pyramid."""
        try:
            data = json.loads(self.read_bytes(join_key(prefix, MANIFEST)))
        except BlobNotFoundError:
            return None
        except ValueError:
            return None
        return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None

    def verify_manifest(self, prefix: str) -> list[str]:
        """Problems of a published pyramid (missing or wrong-size files); empty when complete."""
        manifest = self.read_manifest(prefix)
        if manifest is None:
            return ["no manifest"]
        present = {b.key[len(prefix.strip("/")) + 1 :]: b.size for b in self.list(prefix)}
        problems = []
        for entry in manifest["files"]:
            if entry["path"] not in present:
                problems.append(f"missing {entry['path']}")
            elif present[entry["path"]] != entry["size"]:
                problems.append(f"size of {entry['path']}: {present[entry['path']]} != {entry['size']}")
        return problems


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read 1 MiB at a time (pyramid tiles and multi-GB slides alike)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(2**20):
            digest.update(block)
    return digest.hexdigest()


def manifest_entry(path: Path, name: str) -> dict[str, Any]:
    """A manifest's line for the file at `path`, published as `name` under the prefix: size and sha256 let a
    reader check what it fetched."""
    return {"path": name, "size": path.stat().st_size, "sha256": file_sha256(path)}


def encode_manifest(manifest: dict[str, Any]) -> bytes:
    """A manifest's bytes: one encoding, whichever backend writes it."""
    return json.dumps(manifest, indent=1).encode()


def _one_line(exc: BaseException) -> str:
    """`errors.one_line`, with anything that looks like a credential masked."""
    from tilewright.logs import redact

    return redact(one_line(exc))


def key_parts(key: str) -> dict[str, str]:
    """Template fields of a blob key: container, path (inside it), dir, name, stem."""
    container, _, path = clean_key(key).partition("/")
    name = posixpath.basename(path)
    stem = name
    for suffix in (".ome.tiff", ".ome.tif"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    else:
        stem = os.path.splitext(name)[0] or name
    return {"container": container, "path": path, "dir": posixpath.dirname(path), "name": name, "stem": stem}
