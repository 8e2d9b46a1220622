"""Object storage: local disk, Azure Blob Storage and S3 behind one interface (see `base.Storage`).

`open_url(url, settings)` -> (store, key) for `az://container/path`, `abfs://...`,
`https://ACCOUNT.blob.core.windows.net/container/path` (the configured account only),
`s3://bucket/path`, `file:///path` or a plain path (inside the storage root or an input root).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from tilewright.config import Settings
from tilewright.errors import InputError
from tilewright.paths import readable_roots, root_of
from tilewright.storage.base import (
    MANIFEST,
    BlobInfo,
    BlobNotFoundError,
    ForbiddenSourceError,
    Storage,
    StorageError,
    clean_key,
    join_key,
    key_parts,
)

__all__ = [
    "MANIFEST",
    "BlobInfo",
    "BlobNotFoundError",
    "ForbiddenSourceError",
    "Storage",
    "StorageError",
    "clean_key",
    "join_key",
    "key_parts",
    "open_url",
    "open_store",
]

_AZURE_SCHEMES = ("az", "abfs", "abfss", "azure", "wasb", "wasbs")


def open_store(scheme: str, settings: Settings, root: Path | None = None) -> Storage:
    """A store for a scheme: 'az', 's3' or 'file' (rooted at `root`, default the storage root)."""
    if scheme in _AZURE_SCHEMES:
        from tilewright.storage.azure import AzureStorage

        return AzureStorage(settings)
    if scheme == "s3":
        from tilewright.storage.s3 import S3Storage

        return S3Storage(settings)
    if scheme in ("file", "local", ""):
        from tilewright.storage.local import LocalStorage

        return LocalStorage(settings, root)
    raise InputError(f"unknown storage scheme {scheme!r}; use az://, s3://, file:// or a local path")


def open_url(url: str, settings: Settings) -> tuple[Storage, str]:
    """(store, key) of a URL or path; ForbiddenSourceError when it lies outside what is configured."""
    text = (url or "").strip()
    if not text:
        raise InputError("empty storage URL")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    if scheme in _AZURE_SCHEMES:
        # abfs://container@account.dfs.core.windows.net/path is accepted too (container before the '@')
        container = parts.netloc.split("@", 1)[0]
        return open_store("az", settings), clean_key(f"{container}/{unquote(parts.path)}")
    if scheme == "s3":
        return open_store("s3", settings), clean_key(f"{parts.netloc}/{unquote(parts.path)}")
    if scheme in ("http", "https"):
        store = open_store("az", settings)
        return store, store.key_from_url(text)  # type: ignore[attr-defined]
    if scheme in ("file", ""):
        path = Path(unquote(parts.path) if scheme == "file" else text).expanduser()
        if not path.is_absolute():
            path = settings.resolved_storage_root() / path
        path = path.resolve()
        root = root_of(path, readable_roots(settings))
        if root is not None:
            return open_store("file", settings, root), clean_key(path.relative_to(root).as_posix())
        raise ForbiddenSourceError(
            f"{text!r} is outside the storage root, the input roots and the upload folder "
            "(TILEWRIGHT_STORAGE_ROOT, TILEWRIGHT_INPUT_ROOTS, the upload folder)"
        )
    raise InputError(f"unknown storage URL scheme {parts.scheme!r} in {text!r}")
