"""Where a job's outputs go besides its work directory: the object store (`output_store`) and the
`/outputs/` URLs of what it left under OUTPUT_ROOT. One `publish_to_store` for every kind that uploads
(convert, import, recipe, convert_blob).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tilewright.config import Settings
from tilewright.jobs.kind import TaskContext, TransientError
from tilewright.storage import MANIFEST, Storage, StorageError, join_key, open_url


def output_store(settings: Settings) -> tuple[Storage, str] | None:
    """(store, base key) of `output_store` for convert, recipe and import jobs, or None: not set, or it names no
    container or bucket (`az://`, `s3://`: for blob jobs that means the source blob's own store, which an upload
    lacks)."""
    if not settings.output_store:
        return None
    store, base = open_url(settings.output_store, settings)
    if not base and store.scheme in ("az", "s3"):
        return None
    return store, base


def store_prefix(base: str, collection: str, image_id: str) -> str:
    """Where a convert job publishes in the output store: OUTPUT_STORE/COLLECTION/IMAGE_ID/ (the server looks there)."""
    return join_key(base, collection, image_id)


def describe_input(path: Path) -> dict[str, Any]:
    """A manifest's `source`: a file's name and size; a folder's (an import) name, total size and file count."""
    if path.is_file():
        return {"name": path.name, "size": path.stat().st_size}
    sizes = [item.stat().st_size for item in path.rglob("*") if item.is_file()]
    return {"name": path.name, "size": sum(sizes), "files": len(sizes)}


def output_urls(paths: list[str], settings: Settings) -> list[str]:
    """The `/outputs/` URLs of files under OUTPUT_ROOT."""
    root = settings.resolved_output_root()
    return ["/outputs/" + str(Path(p).relative_to(root)) for p in paths]


def publish_to_store(
    ctx: TaskContext,
    store: Storage,
    prefix: str,
    folder: Path,
    *,
    source: dict[str, Any],
    extra: dict[str, Any],
    start: float,
    dzi: str = "slide.dzi",
) -> dict[str, Any]:
    """Publish `folder` at `prefix` (manifest last), the bar going from `start` to 1; -> the job result's `store`
    entry (`dzi`: the URL of that file when it is there). A storage failure is transient: the job is retried."""
    try:
        manifest = store.publish_pyramid(
            folder,
            prefix,
            source=source,
            extra={"job_id": ctx.job_id, **extra},
            progress=lambda done, total: ctx.progress(
                start + (1 - start) * done / max(total, 1), f"uploading {done}/{total}"
            ),
            cancelled=ctx.cancelled,
        )
    except StorageError as exc:
        raise TransientError(exc.reason) from exc
    entry: dict[str, Any] = {
        "output": store.url(prefix),
        "manifest": store.url(join_key(prefix, MANIFEST)),
        "files": manifest["file_count"],
        "bytes": manifest["bytes"],
    }
    if any(f["path"] == dzi for f in manifest["files"]):
        entry["dzi"] = store.url(join_key(prefix, dzi))
    return entry
