"""`convert_blob`: convert one blob *version* to DZI in object storage (issue 5).

Stream the blob to a temp file in the job's work directory, convert to DZI, publish under
the output template with the manifest last. Its key is `events.filters.job_key(canonical
URL, etag)` (see `events.submit`), so duplicates and redeliveries are one job.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tilewright.config import Settings
from tilewright.convert import convert, make_options
from tilewright.errors import CancelledError
from tilewright.events.filters import output_prefix
from tilewright.jobs.kind import Task, TaskContext
from tilewright.jobs.kinds.blob import BlobParams, checked, download, output_target, storage_faults, superseded
from tilewright.jobs.publish import publish_to_store
from tilewright.storage import key_parts, open_url

KIND = "convert_blob"


class Params(BlobParams):
    """The blob version to convert."""


def check(params: Params, settings: Settings) -> tuple[dict[str, Any], str]:
    clean = checked(params, settings)
    return clean, f"{clean['etag']}\0{clean['version']}"


def run(ctx: TaskContext) -> dict[str, Any]:
    """Download (streamed) -> convert to DZI -> publish with manifest last; temp files live in the work dir."""
    started = time.perf_counter()
    settings, params = ctx.settings, Params.model_validate(ctx.params)
    with storage_faults():
        store, key = open_url(params.source, settings)
        info = store.info(key)
        if (answer := superseded(params, info)) is not None:
            return answer
        suffix = (
            "".join(Path(key).suffixes[-2:]) if key.lower().endswith((".ome.tif", ".ome.tiff")) else Path(key).suffix
        )
        local = ctx.work_dir / f"source{suffix.lower()}"
        download(ctx, store, key, local)
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
        target, base = output_target(settings, store)
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
