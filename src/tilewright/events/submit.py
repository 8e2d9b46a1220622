"""The one function every event source submits through: a blob URL (and its version) -> its
`convert_blob` job (`jobs.kinds.convert_blob`), once per version."""

from __future__ import annotations

from typing import Any

from tilewright.config import Settings
from tilewright.events.filters import accept, job_key
from tilewright.jobs.executors import Executor
from tilewright.jobs.kinds.convert_blob import KIND
from tilewright.jobs.service import submit_job
from tilewright.storage import Storage, open_url
from tilewright.storage.local import LocalStorage


def submit_blob(
    settings: Settings,
    executor: Executor | None,
    url: str,
    *,
    etag: str = "",
    version: str = "",
    origin: str = "",
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
    settings: Settings,
    executor: Executor | None,
    store: Storage,
    key: str,
    *,
    etag: str = "",
    version: str = "",
    origin: str = "",
) -> dict[str, Any]:
    """Submit the job of a blob that already passed `filters.accept`, in a store the caller has open
    (a watcher lists, filters and submits a whole listing with one store).

    -> {"status": "submitted" | "duplicate", ...}; without an etag or version the blob must exist (`info`).
    """
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
