"""The one function every event source submits through: a blob URL (and its version) -> its job, once per
version: `convert_blob` (a Deep Zoom pyramid), or `recipe_blob` with `TILEWRIGHT_EVENT_RECIPE` set.

An event names a store the server may not be set up for: an https blob URL with no Azure settings, an
`s3://` bucket with no S3 settings. Both are `NotConfiguredError` (503), so that the sender retries once the
operator has configured it; an S3 event is not sent to AWS with whatever credentials the machine has."""

from __future__ import annotations

from typing import Any

from tilewright.config import Settings
from tilewright.events.filters import accept, job_key
from tilewright.jobs.executors import Executor
from tilewright.jobs.kinds import convert_blob, recipe_blob
from tilewright.jobs.service import submit_job
from tilewright.storage import NotConfiguredError, Storage, open_url
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
    the configured stores, BlobNotFoundError when the event carries no etag and the blob is gone,
    NotConfiguredError (503) when its store has no settings here.
    """
    store, key = open_url(url, settings)
    if store.scheme == "s3" and not (settings.s3_endpoint_url or settings.s3_access_key_id or settings.s3_region):
        raise NotConfiguredError(
            "S3 is not configured: set TILEWRIGHT_S3_ENDPOINT_URL (MinIO, Ceph ...) or TILEWRIGHT_S3_ACCESS_KEY_ID, "
            "or TILEWRIGHT_S3_REGION to use AWS with the SDK's credential chain"
        )
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
    kind = convert_blob.KIND
    if settings.event_recipe:
        kind, params = recipe_blob.KIND, {**params, "recipe": settings.event_recipe}
    key = job_key(canonical, params["etag"], version, settings.event_recipe)
    job, created = submit_job(settings, executor, kind, params, key=key)
    return {
        "status": "submitted" if created else "duplicate",
        "url": canonical,
        "etag": params["etag"],
        "job": job["id"],
        "state": job["state"],
    }
