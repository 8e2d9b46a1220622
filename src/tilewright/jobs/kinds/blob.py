"""What the two kinds that work on one blob *version* share (`convert_blob`, `recipe_blob`): their parameters
and check, opening the version they were submitted for (or saying it was overwritten since), the streamed
download into the work folder, where their outputs go, and how a store's failure ends the job.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tilewright.config import Settings
from tilewright.errors import InputError
from tilewright.jobs.kind import TaskContext, TransientError
from tilewright.storage import BlobInfo, BlobNotFoundError, Storage, StorageError, open_url


class BlobParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, description="az://, s3://, https://ACCOUNT.blob..., file://")
    etag: str | None = None
    version: str | None = None
    origin: str | None = None


def checked(params: BlobParams, settings: Settings) -> dict[str, str]:
    """The parameters as stored: the canonical URL (refused when outside the configured stores), the etag
    without its quotes, empty strings for what an event did not say."""
    store, key = open_url(params.source, settings)
    return {
        "source": store.url(key),
        "etag": (params.etag or "").strip('"'),
        "version": params.version or "",
        "origin": params.origin or "",
    }


def superseded(params: BlobParams, info: BlobInfo) -> dict[str, Any] | None:
    """The job's answer when the blob was overwritten after its event (an unversioned store: the new content
    has its own event and job), else None."""
    if params.etag and info.etag != params.etag and not params.version:
        return {
            "source": params.source,
            "superseded": True,
            "etag": params.etag,
            "current_etag": info.etag,
            "detail": "the blob was overwritten after this event; its new version has its own job",
        }
    return None


def download(ctx: TaskContext, store: Storage, key: str, local: Path) -> None:
    """The blob streamed to `local`, as the first fifth of the job's progress."""
    ctx.progress(0.0, "downloading")
    store.download(key, local, progress=lambda done, total: ctx.progress(0.2 * done / max(total, 1), "downloading"))


def output_target(settings: Settings, source: Storage) -> tuple[Storage, str]:
    """Where the outputs go: `TILEWRIGHT_OUTPUT_STORE` (its store and base key) when set, else beside the source."""
    return open_url(settings.output_store, settings) if settings.output_store else (source, "")


@contextmanager
def storage_faults() -> Iterator[None]:
    """A blob gone is the input's fault (the job fails); any other store failure is worth another attempt."""
    try:
        yield
    except BlobNotFoundError as exc:
        raise InputError(exc.reason) from None
    except StorageError as exc:
        raise TransientError(exc.reason) from exc
