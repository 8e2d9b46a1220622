"""`convert_blob`: convert one blob *version* to DZI in object storage (issue 5).

Stream the blob to a temp file in the job's work directory, convert to DZI, publish under
the output template with the manifest last. Its key is `events.filters.job_key(canonical
URL, etag)` (see `events.submit`), so duplicates and redeliveries are one job.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tilewright.config import Settings
from tilewright.convert import convert, make_options
from tilewright.errors import CancelledError, InputError
from tilewright.events.filters import output_prefix
from tilewright.jobs.kind import Task, TaskContext, TransientError
from tilewright.jobs.publish import publish_to_store
from tilewright.storage import BlobNotFoundError, StorageError, key_parts, open_url

KIND = "convert_blob"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, description="az://, s3://, https://ACCOUNT.blob..., file://")
    etag: str | None = None
    version: str | None = None
    origin: str | None = None


def check(params: Params, settings: Settings) -> tuple[dict[str, Any], str]:
    store, key = open_url(params.source, settings)  # refuses URLs outside the configured stores
    clean = {
        "source": store.url(key),
        "etag": (params.etag or "").strip('"'),
        "version": params.version or "",
        "origin": params.origin or "",
    }
    return clean, f"{clean['etag']}\0{clean['version']}"


def run(ctx: TaskContext) -> dict[str, Any]:
    """Download (streamed) -> convert to DZI -> publish with manifest last; temp files live in the work dir."""
    started = time.perf_counter()
    settings, params = ctx.settings, Params.model_validate(ctx.params)
    try:
        store, key = open_url(params.source, settings)
        info = store.info(key)
        if params.etag and info.etag != params.etag and not params.version:
            return {
                "source": params.source,
                "superseded": True,
                "etag": params.etag,
                "current_etag": info.etag,
                "detail": "the blob was overwritten after this event; its new version has its own job",
            }
        suffix = (
            "".join(Path(key).suffixes[-2:]) if key.lower().endswith((".ome.tif", ".ome.tiff")) else Path(key).suffix
        )
        local = ctx.work_dir / f"source{suffix.lower()}"
        ctx.progress(0.0, "downloading")
        store.download(key, local, progress=lambda done, total: ctx.progress(0.2 * done / max(total, 1), "downloading"))
        if ctx.cancelled():
            raise CancelledError("cancelled")
        out = ctx.work_dir / "out"
        out.mkdir()
        stem = key_parts(key)["stem"] or "slide"
        result = convert(
            local,
            out / stem,
            "dzi",
            options=make_options("dzi", settings),
            settings=settings,
            progress=lambda f, stage: ctx.progress(0.2 + 0.5 * f, stage),
            cancelled=ctx.cancelled,
        )
        local.unlink(missing_ok=True)  # the source copy is not needed any more: free the disk now
        if settings.output_store:
            target, base = open_url(settings.output_store, settings)
        else:
            target, base = store, ""
        published = publish_to_store(
            ctx,
            target,
            output_prefix(key, info.etag, settings, base),
            out,
            source={"url": params.source, "etag": info.etag, "version": info.version, "size": info.size},
            extra={
                "kind": "dzi",
                "width": result.width,
                "height": result.height,
                "levels": result.levels,
                "tiles": result.tiles,
            },
            start=0.7,
            dzi=Path(result.output).relative_to(out).as_posix(),  # the .dzi the writer wrote (`x.dzi.svs`: x.dzi)
        )
    except BlobNotFoundError as exc:
        raise InputError(exc.reason) from None
    except StorageError as exc:
        raise TransientError(exc.reason) from exc
    return {
        "source": params.source,
        "etag": info.etag,
        "output": published["output"],
        "dzi": published["dzi"],
        "manifest": published["manifest"],
        "files": published["files"],
        "tiles": result.tiles,
        "bytes": published["bytes"],
        "width": result.width,
        "height": result.height,
        "seconds": round(time.perf_counter() - started, 3),
    }


TASK = Task(Params, check, run, "convert one blob version to DZI in object storage")
