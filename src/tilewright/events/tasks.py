"""The `convert_blob` job kind and the one function every event source submits through.

A job converts one blob *version*: stream it to a temp file in the job's work directory,
convert to DZI, publish under the output template with the manifest last. Its key is
`filters.job_key(canonical URL, etag)`, so duplicates and redeliveries are one job.
Nothing here imports the job package at module level (the registry imports this module).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tilewright.config import Settings
from tilewright.errors import InputError
from tilewright.events.filters import accept, job_key, output_prefix
from tilewright.storage import BlobNotFoundError, StorageError, open_url
from tilewright.storage.base import MANIFEST, Storage, join_key
from tilewright.storage.local import LocalStorage

if TYPE_CHECKING:
    from tilewright.jobs.tasks import TaskContext

log = logging.getLogger(__name__)
KIND = "convert_blob"


def submit_blob(
    settings: Settings, executor: Any, url: str, *, etag: str = "", version: str = "", origin: str = ""
) -> dict[str, Any]:
    """Check the blob at `url` against the filters and submit its job (or find the existing one).

    -> {"status": "submitted" | "duplicate" | "ignored", ...}. Raises InputError (4xx) for a URL outside
    the configured stores, BlobNotFoundError when the event carries no etag and the blob is gone.
    """
    store, key = open_url(url, settings)
    ok, reason = accept(key, settings, local=isinstance(store, LocalStorage))
    if not ok:
        return {"status": "ignored", "url": store.url(key), "reason": reason}
    return submit_accepted(settings, executor, store, key, etag=etag, version=version, origin=origin)


def submit_accepted(
    settings: Settings, executor: Any, store: Storage, key: str, *, etag: str = "", version: str = "", origin: str = ""
) -> dict[str, Any]:
    """Submit the job of a blob that already passed `filters.accept`, in a store the caller has open
    (a watcher lists, filters and submits a whole listing with one store).

    -> {"status": "submitted" | "duplicate", ...}; without an etag or version the blob must exist (`info`).
    """
    from tilewright.jobs.service import submit_job

    canonical = store.url(key)
    if not etag and not version:
        info = store.info(key)  # the blob must exist to be versioned
        etag, version = info.etag, info.version
    params = {"source": canonical, "etag": etag.strip('"'), "version": version, "origin": origin}
    job, created = submit_job(settings, executor, KIND, params, key=job_key(canonical, params["etag"], version))
    return {
        "status": "submitted" if created else "duplicate",
        "url": canonical,
        "etag": params["etag"],
        "job": job["id"],
        "state": job["state"],
    }


def prepare_convert_blob(params: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], str]:
    unknown = set(params) - {"source", "etag", "version", "origin"}
    if unknown:
        raise InputError(f"unknown convert_blob parameters: {', '.join(sorted(unknown))}")
    source = params.get("source")
    if not isinstance(source, str) or not source:
        raise InputError("convert_blob needs a 'source' URL (az://, s3://, https://ACCOUNT.blob..., file://)")
    store, key = open_url(source, settings)  # refuses URLs outside the configured stores
    clean = {
        "source": store.url(key),
        "etag": str(params.get("etag") or "").strip('"'),
        "version": str(params.get("version") or ""),
        "origin": str(params.get("origin") or ""),
    }
    return clean, f"{clean['etag']}\0{clean['version']}"


def _transient(exc: StorageError):
    from tilewright.jobs.tasks import TransientError

    return TransientError(exc.reason)


def run_convert_blob(ctx: TaskContext) -> dict[str, Any]:
    """Download (streamed) -> convert to DZI -> publish with manifest last; temp files live in the work dir."""
    from tilewright.convert import convert, make_options

    started = time.perf_counter()
    settings, params = ctx.settings, ctx.params
    try:
        store, key = open_url(params["source"], settings)
        info = store.info(key)
        if params.get("etag") and info.etag != params["etag"] and not params.get("version"):
            return {
                "source": params["source"],
                "superseded": True,
                "etag": params["etag"],
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
            from tilewright.errors import CancelledError

            raise CancelledError("cancelled")
        out = ctx.work_dir / "out"
        out.mkdir()
        from tilewright.storage.keys import key_parts

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
        prefix = output_prefix(key, info.etag, settings, base)
        manifest = target.publish_pyramid(
            out,
            prefix,
            source={"url": params["source"], "etag": info.etag, "version": info.version, "size": info.size},
            extra={
                "job_id": ctx.job_id,
                "kind": "dzi",
                "width": result.width,
                "height": result.height,
                "levels": result.levels,
                "tiles": result.tiles,
            },
            progress=lambda done, total: ctx.progress(0.7 + 0.3 * done / max(total, 1), f"uploading {done}/{total}"),
            cancelled=ctx.cancelled,
        )
    except BlobNotFoundError as exc:
        raise InputError(exc.reason) from None
    except StorageError as exc:
        raise _transient(exc) from exc
    return {
        "source": params["source"],
        "etag": info.etag,
        "output": target.url(prefix),
        "dzi": target.url(join_key(prefix, f"{stem}.dzi")),
        "manifest": target.url(join_key(prefix, MANIFEST)),
        "files": manifest["file_count"],
        "tiles": result.tiles,
        "bytes": manifest["bytes"],
        "width": result.width,
        "height": result.height,
        "seconds": round(time.perf_counter() - started, 3),
    }
