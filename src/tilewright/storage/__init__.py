"""Object storage: local disk, Azure Blob Storage and S3 behind one interface (see `base.Storage`).

`open_url(url, settings)` -> (store, key) for `az://container/path`, `abfs://...`,
`https://ACCOUNT.blob.core.windows.net/container/path` (the configured account only),
`s3://bucket/path`, `file:///path` or a plain path (inside the storage root or an input root).

The parts: `base` (the interface over fsspec), `keys` (naming), `errors`, `retry` (transient failures),
`parallel` (many requests at once), `manifest` (the completeness document: build, encode, parse, verify),
`publish` (folder upload, manifest last); one module per store (`local`, `azure`, `s3`) with what differs.
A new store is a `Storage` subclass in its own module plus its scheme in `open_store`/`open_url`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from tilewright.config import Settings
from tilewright.errors import InputError
from tilewright.paths import readable_roots, root_of
from tilewright.storage.base import BlobInfo, Storage
from tilewright.storage.errors import BlobNotFoundError, ForbiddenSourceError, StorageError
from tilewright.storage.keys import clean_key, join_key, key_parts
from tilewright.storage.local import LocalStorage
from tilewright.storage.manifest import MANIFEST, parse_manifest

if TYPE_CHECKING:
    from tilewright.storage.azure import AzureStorage

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
    "parse_manifest",
]

_AZURE_SCHEMES = ("az", "abfs", "abfss", "azure", "wasb", "wasbs")


def open_store(scheme: str, settings: Settings, root: Path | None = None) -> Storage:
    """A store for a scheme: 'az', 's3' or 'file' (rooted at `root`, default the storage root)."""
    # Azure and S3 are imported when first asked for: a local-only run never loads adlfs/azure or s3fs/botocore
    if scheme in _AZURE_SCHEMES:
        return _azure(settings)
    if scheme == "s3":
        from tilewright.storage.s3 import S3Storage  # s3fs and botocore only for S3 (see above)

        return S3Storage(settings)
    if scheme in ("file", "local", ""):
        return LocalStorage(settings, root)
    raise InputError(f"unknown storage scheme {scheme!r}; use az://, s3://, file:// or a local path")


def _azure(settings: Settings) -> AzureStorage:
    from tilewright.storage.azure import AzureStorage  # adlfs and the Azure SDK only for Azure (see open_store)

    return AzureStorage(settings)


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
        store = _azure(settings)  # an https URL is a blob of the configured Azure account, or refused
        return store, store.key_from_url(text)
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
