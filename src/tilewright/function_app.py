"""Azure Functions adapter (Python v2 programming model): the system tilewright replaces, as a thin shell.

- `on_event_grid`: Event Grid trigger; `Microsoft.Storage.BlobCreated` -> the same `convert_blob` job the
  `/events/eventgrid` route makes (same exactly-once key), run inline or only submitted
  (`TILEWRIGHT_FUNCTIONS_RUN_INLINE`).
- `on_blob`: blob trigger on `TILEWRIGHT_FUNCTION_BLOB_PATH` (default `slides/{name}`, connection
  `AzureWebJobsStorage`); the trigger's stream is not read: the job streams the blob itself.
- `resize`: HTTP `GET /api/resize?url=...&size=512`: a JPEG thumbnail of a blob (streamed to a temp file).

Deploy: a Function App folder whose `function_app.py` is `from tilewright.function_app import app`
(see docs/storage.md). Configure tilewright with the usual `TILEWRIGHT_*` app settings.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import azure.functions as func

from tilewright.config import Settings, get_settings
from tilewright.errors import TilewrightError, one_line
from tilewright.events.parse import BLOB_CREATED
from tilewright.imaging.colour import parse_colour
from tilewright.storage import open_url

log = logging.getLogger(__name__)
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
BLOB_PATH = os.environ.get("TILEWRIGHT_FUNCTION_BLOB_PATH", "slides/{name}")


_migrated: set[str] = set()  # database URLs this process has brought to the newest schema


def handle_blob(url: str, etag: str = "", settings: Settings | None = None) -> dict[str, Any]:
    """Submit the blob's job (idempotent) and, when running inline, run it now; returns the outcome."""
    # each trigger loads what it uses: the job machinery (SQLAlchemy, Alembic, the job kinds; ~0.4 s) is not
    # imported when the Functions host indexes this module, nor by `resize`
    from tilewright.db import init_db

    # the submission path too: it imports the job package
    from tilewright.events.submit import submit_blob
    from tilewright.jobs import store  # (see above)
    from tilewright.jobs.runner import execute  # (see above)

    settings = settings or get_settings()
    if settings.resolved_database_url() not in _migrated:  # once per process, not once per blob
        init_db(settings)
        _migrated.add(settings.resolved_database_url())
    outcome = submit_blob(settings, None, url, etag=etag, origin="azure-functions")
    if outcome["status"] == "submitted" and settings.functions_run_inline:
        result = execute(outcome["job"], settings)
        job = store.get(settings, outcome["job"])
        outcome.update(state=job["state"], error=job["error"], outputs=job["outputs"], run=result.status)
        if job["state"] == "queued":  # a transient failure: make the platform retry the invocation
            raise RuntimeError(f"job {job['id']} failed transiently: {job['error']}")
    log.info("blob %s: %s", outcome.get("url"), outcome["status"])
    return outcome


@app.function_name("on_event_grid")
@app.event_grid_trigger(arg_name="event")
def on_event_grid(event: func.EventGridEvent) -> None:
    if event.event_type != BLOB_CREATED:
        log.info("ignoring Event Grid event %s of type %s", event.id, event.event_type)
        return
    data = event.get_json() or {}
    try:
        handle_blob(str(data.get("url") or ""), str(data.get("eTag") or ""))
    except TilewrightError as exc:  # bad input: log it, do not make Event Grid redeliver forever
        log.error("Event Grid event %s rejected: %s", event.id, exc)


@app.function_name("on_blob")
@app.blob_trigger(arg_name="blob", path=BLOB_PATH, connection="AzureWebJobsStorage")
def on_blob(blob: func.InputStream) -> None:
    props = getattr(blob, "blob_properties", None) or {}  # the runtime's InputStream has them
    etag = str(props.get("ETag") or props.get("Etag") or props.get("etag") or "")
    url = getattr(blob, "uri", None) or f"az://{blob.name}"
    try:
        handle_blob(url, etag)
    except TilewrightError as exc:
        log.error("blob %s rejected: %s", blob.name, exc)


@app.function_name("resize")
@app.route(route="resize", methods=["GET"])
def resize(req: func.HttpRequest) -> func.HttpResponse:
    url = req.params.get("url", "")
    try:
        size = int(req.params.get("size", "512"))
        if not 1 <= size <= 4096:
            raise ValueError
    except ValueError:
        return _error(400, "size must be an integer from 1 to 4096")
    if not url:
        return _error(400, "give the blob as ?url=")
    try:
        body = thumbnail(url, size)
    except TilewrightError as exc:
        return _error(exc.http_status if exc.http_status < 500 else 503, one_line(exc, None))
    return (
        func.HttpResponse(
            body=body, status_code=200, mimetype="image/jpeg", headers={"Cache-Control": "public, max-age=3600"}
        )
        if body
        else func.HttpResponse(json.dumps({"error": "empty"}), status_code=500)
    )


def thumbnail(url: str, size: int, settings: Settings | None = None) -> bytes:
    """A JPEG of the blob fitting size x size (the blob is streamed to a temp file, removed afterwards)."""
    # pyvips and the readers (~0.3 s) only for `resize`: the event and blob triggers only submit (or run a job)
    from tilewright.formats import open_slide
    from tilewright.imaging.eight_bit import to_eight_bit  # (see above)

    settings = settings or get_settings()
    store, key = open_url(url, settings)
    with tempfile.TemporaryDirectory(prefix="tw-resize-") as folder:
        local = Path(folder) / ("blob" + Path(key).suffix.lower())
        store.download(key, local)
        with open_slide(local, settings) as reader:
            image = to_eight_bit(reader.thumbnail(size), parse_colour(settings.background))
            return image.jpegsave_buffer(Q=settings.quality)


def _error(status: int, detail: str) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps({"error": "bad request" if status < 500 else "unavailable", "detail": detail}),
        status_code=status,
        mimetype="application/json",
    )
