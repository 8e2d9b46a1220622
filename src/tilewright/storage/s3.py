"""S3 and S3-compatible stores (MinIO, Ceph, moto) through s3fs. Keys are `bucket/path`; URLs `s3://bucket/path`.

What differs: buckets are created with the region's location constraint, multipart parts are at least
5 MiB, and s3fs's listing cache is dropped before each listing or `info` (a watcher and an event for a
blob just written must see what is there now).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from s3fs import S3FileSystem

from tilewright.config import Settings
from tilewright.storage.base import BlobInfo, FileSystem, Storage

S3_MIN_PART = 5 * 2**20


class S3FileSystemLike(FileSystem, Protocol):
    """`FileSystem` plus s3fs's raw call, used to create a bucket (s3fs ships no types)."""

    def call_s3(self, method: str, **kwargs: Any) -> Any: ...


def _filesystem(settings: Settings) -> S3FileSystemLike:
    kwargs: dict[str, Any] = {
        "skip_instance_cache": True,
        "config_kwargs": {"retries": {"max_attempts": 2, "mode": "standard"}},
    }
    if settings.s3_endpoint_url:
        kwargs["endpoint_url"] = settings.s3_endpoint_url
    if settings.s3_region:
        kwargs["client_kwargs"] = {"region_name": settings.s3_region}
    if settings.s3_access_key_id:
        kwargs["key"] = settings.s3_access_key_id
    if settings.s3_secret_access_key is not None:
        kwargs["secret"] = settings.s3_secret_access_key.get_secret_value()
    fs: S3FileSystemLike = S3FileSystem(**kwargs)
    return fs


class S3Storage(Storage):
    scheme = "s3"
    fs: S3FileSystemLike

    @classmethod
    def from_settings(cls, settings: Settings, root: Path | None = None) -> S3Storage:
        return cls(settings)

    def __init__(self, settings: Settings) -> None:
        super().__init__(_filesystem(settings), settings, "")
        self.endpoint = settings.s3_endpoint_url or "AWS"

    def describe(self) -> str:
        return f"s3:// (endpoint {self.endpoint})"

    def _create_container(self, name: str) -> None:
        region = self.settings.s3_region
        extra = (
            {"CreateBucketConfiguration": {"LocationConstraint": region}} if region and region != "us-east-1" else {}
        )  # us-east-1 refuses its own name here
        self.fs.call_s3("create_bucket", Bucket=name, **extra)
        self.fs.invalidate_cache()

    def _open_write(self, key: str) -> IO[bytes]:
        return self.fs.open(self.full(key), "wb", block_size=max(self.chunk, S3_MIN_PART))

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        self.fs.invalidate_cache()  # s3fs caches listings; a watcher needs what is there now
        yield from super().list(prefix)

    def info(self, key: str) -> BlobInfo:
        self.fs.invalidate_cache(self.full(key))
        return super().info(key)
