"""`/events/*`: storage events in -> `convert_blob` jobs (one per blob version); `/storage/pyramid`: is it published?

- `POST /events/eventgrid`: Event Grid schema (SubscriptionValidation handshake, BlobCreated, batches).
- `OPTIONS|POST /events/cloudevents`: CloudEvents 1.0 (webhook-validation handshake; structured, binary, batch).
- `POST /events/s3`: S3 event notifications (AWS, MinIO).

With `events_key` set, each needs `?key=` or the `aeg-sas-key` / `x-tilewright-key` header. Other event
types are ignored with 200. A malformed payload is a 400, a URL outside the configured stores a 403, a
missing blob (when the event has no etag) a 404; a batch is processed event by event and answers with the
worst status among them, listing what happened to each.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tilewright.errors import TilewrightError, one_line
from tilewright.events.parse import (
    MAX_EVENT_BYTES,
    EventError,
    Parsed,
    load_json,
    parse_cloudevents,
    parse_eventgrid,
    parse_s3,
)
from tilewright.events.submit import submit_blob
from tilewright.server.deps import executor_of, settings_of
from tilewright.server.errors import ApiError

log = logging.getLogger(__name__)
router = APIRouter(tags=["events"])


def _check_key(request: Request) -> None:
    expected = settings_of(request).events_key
    if expected is None or not expected.get_secret_value():
        return
    given = (
        request.query_params.get("key")
        or request.headers.get("aeg-sas-key")
        or request.headers.get("x-tilewright-key")
        or ""
    )
    if not secrets.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise ApiError(
            401,
            "this endpoint needs the events key (?key=, aeg-sas-key or x-tilewright-key header; TILEWRIGHT_EVENTS_KEY)",
        )


async def _body(request: Request) -> bytes:
    """The request body, refused past the event size limit without reading it all."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_EVENT_BYTES:
        raise ApiError(413, f"event payload over {MAX_EVENT_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_EVENT_BYTES:
            raise ApiError(413, f"event payload over {MAX_EVENT_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _submit_all(request: Request, parsed: Parsed) -> JSONResponse:
    settings, executor = settings_of(request), executor_of(request)
    results: list[dict[str, Any]] = [{"status": "ignored", **item} for item in parsed.ignored]
    worst = 200
    for blob in parsed.blobs:
        try:
            outcome = submit_blob(
                settings, executor, blob.url, etag=blob.etag, version=blob.version, origin=blob.origin
            )
        except TilewrightError as exc:
            status = exc.http_status if 400 <= exc.http_status < 500 else 503
            worst = max(worst, status)
            outcome = {
                "status": "rejected",
                "url": blob.url,
                "error": one_line(exc, None),
                "type": type(exc).__name__,
            }
            log.warning("event %s rejected: %s", blob.event_id, outcome["error"])
        results.append({"id": blob.event_id, **outcome})
    body: dict[str, Any] = {
        "results": results,
        "submitted": sum(r["status"] == "submitted" for r in results),
        "duplicates": sum(r["status"] == "duplicate" for r in results),
    }
    if worst != 200:
        body = {
            "error": "bad request" if worst < 500 else "unavailable",
            "detail": "; ".join(r["error"] for r in results if r["status"] == "rejected"),
            **body,
        }
    return JSONResponse(body, status_code=worst)


@router.post("/events/eventgrid")
async def eventgrid(request: Request) -> Response:
    """Event Grid schema: answers the validation handshake; BlobCreated -> a job per blob version."""
    _check_key(request)
    parsed = parse_eventgrid(load_json(await _body(request)))
    if parsed.validation_code is not None:
        log.info("Event Grid subscription validated")
        return JSONResponse({"validationResponse": parsed.validation_code})
    return await run_in_threadpool(_submit_all, request, parsed)


@router.options("/events/cloudevents")
def cloudevents_handshake(request: Request) -> Response:
    """CloudEvents webhook validation (abuse protection): echo the allowed origin."""
    _check_key(request)
    origin = request.headers.get("webhook-request-origin")
    if not origin:
        return Response(status_code=200, headers={"Allow": "OPTIONS, POST"})
    allowed = settings_of(request).webhook_allowed_origins
    if allowed and origin not in allowed and "*" not in allowed:
        raise ApiError(403, f"origin {origin!r} is not in TILEWRIGHT_WEBHOOK_ALLOWED_ORIGINS")
    return Response(
        status_code=200,
        headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*", "Allow": "OPTIONS, POST"},
    )


@router.post("/events/cloudevents")
async def cloudevents(request: Request) -> Response:
    """CloudEvents 1.0, structured or binary mode or a batch; Microsoft.Storage.BlobCreated -> a job."""
    _check_key(request)
    parsed = parse_cloudevents(dict(request.headers), await _body(request))
    return await run_in_threadpool(_submit_all, request, parsed)


@router.post("/events/s3")
async def s3_events(request: Request) -> Response:
    """S3 event notifications (`Records[].s3`, as AWS and MinIO send them): ObjectCreated -> a job."""
    _check_key(request)
    parsed = parse_s3(load_json(await _body(request)))
    return await run_in_threadpool(_submit_all, request, parsed)


@router.get("/storage/pyramid")
def pyramid(request: Request, url: str = Query(..., description="Output folder, e.g. az://c/web-slides-dzi-output/x")):
    """The manifest of a published pyramid; 404 while it has none (in progress, crashed, or absent)."""
    from tilewright.storage import open_url

    store, key = open_url(url, settings_of(request))
    manifest = store.read_manifest(key)
    if manifest is None:
        raise ApiError(404, f"no published pyramid at {store.url(key)} (no manifest)")
    return manifest


__all__ = ["router", "EventError"]
