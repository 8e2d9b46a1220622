"""Object storage: local disk, Azure Blob Storage and S3 behind one interface (see `base.Storage`).

`open_url(url, settings)` -> (store, key) for `az://container/path`, `abfs://...`,
`https://ACCOUNT.blob.core.windows.net/container/path` (the configured account only),
`s3://bucket/path`, `file:///path` or a plain path (inside the storage root or an input root).

The parts: `base` (the interface over fsspec), `keys` (naming), `errors`, `retry` (transient failures),
`parallel` (many requests at once), `manifest` (the completeness document: build, encode, parse, verify),
`publish` (folder upload, manifest last); one module per store (`local`, `azure`, `s3`) with what differs.
A new store is a `Storage` subclass in its own module plus one line in `STORES` (its URL scheme).
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tilewright.config import Settings
from tilewright.errors import InputError, OutsideRootsError
from tilewright.paths import readable_roots, resolve, root_of
from tilewright.storage.base import BlobInfo, Storage
from tilewright.storage.errors import BlobNotFoundError, NotConfiguredError, StorageError
from tilewright.storage.keys import clean_key, join_key, key_parts
from tilewright.storage.manifest import MANIFEST, parse_manifest

__all__ = [
    "MANIFEST",
    "BlobInfo",
    "BlobNotFoundError",
    "NotConfiguredError",
    "Storage",
    "StorageError",
    "clean_key",
    "join_key",
    "key_parts",
    "open_url",
    "open_store",
    "parse_manifest",
]

#: URL scheme -> the store serving it, as "module:Class": a new store is one module plus one line here.
#: Imported when first asked for (`_store_class`): a local-only run never loads adlfs/azure or s3fs/botocore.
STORES: dict[str, str] = {
    "az": "tilewright.storage.azure:AzureStorage",
    "s3": "tilewright.storage.s3:S3Storage",
    "file": "tilewright.storage.local:LocalStorage",
}
#: other spellings of a scheme (adlfs' and Hadoop's names for Azure; "" is a plain path)
SCHEME_ALIASES = {"abfs": "az", "abfss": "az", "azure": "az", "wasb": "az", "wasbs": "az", "local": "file", "": "file"}


def _store_class(scheme: str) -> type[Storage]:
    spec = STORES.get(SCHEME_ALIASES.get(scheme, scheme))
    if spec is None:
        known = ", ".join(f"{name}://" for name in STORES)
        raise InputError(f"unknown storage scheme {scheme!r}; use {known} or a local path")
    module, _, name = spec.partition(":")
    store_class: type[Storage] = getattr(import_module(module), name)
    return store_class


def open_store(scheme: str, settings: Settings, root: Path | None = None) -> Storage:
    """A store for a scheme of `STORES` (or an alias): the local one rooted at `root` (default the storage root)."""
    return _store_class(scheme).from_settings(settings, root)


def open_url(url: str, settings: Settings) -> tuple[Storage, str]:
    """(store, key) of a URL or path; OutsideRootsError when it lies outside what is configured."""
    text = (url or "").strip()
    if not text:
        raise InputError("empty storage URL")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    if scheme in ("http", "https"):
        store = open_store("az", settings)  # an https URL is a blob of the configured Azure account, or refused
        return store, store.key_from_url(text)
    if scheme in ("file", ""):  # (`local` names the store in `open_store`, never a URL scheme)
        path = resolve(unquote(parts.path) if scheme == "file" else text, settings.resolved_storage_root())
        root = root_of(path, readable_roots(settings))
        if root is not None:
            return open_store("file", settings, root), clean_key(path.relative_to(root).as_posix())
        raise OutsideRootsError(
            f"{text!r} is outside the storage root, the input roots and the upload folder "
            "(TILEWRIGHT_STORAGE_ROOT, TILEWRIGHT_INPUT_ROOTS, the upload folder)"
        )
    if SCHEME_ALIASES.get(scheme, scheme) in STORES.keys() - {"file"}:
        # SCHEME://CONTAINER/KEY (bucket for S3); abfs://container@account.dfs.core.windows.net/path too
        container = parts.netloc.split("@", 1)[0]
        return open_store(scheme, settings), clean_key(f"{container}/{unquote(parts.path)}")
    raise InputError(f"unknown storage URL scheme {parts.scheme!r} in {text!r}")
