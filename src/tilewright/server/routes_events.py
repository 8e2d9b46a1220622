"""`/events/*`: storage events in -> `convert_blob` jobs (one per blob version); `/storage/pyramid`: is it published?

- `POST /events/eventgrid`: Event Grid schema (SubscriptionValidation handshake, BlobCreated, batches).
- `OPTIONS|POST /events/cloudevents`: CloudEvents 1.0 (webhook-validation handshake; structured, binary, batch).
- `POST /events/s3`: S3 event notifications (AWS, MinIO).

Each route comes from a source in `events.sources.SOURCES` (its parser and, if it has one, its handshake).

With `events_key` set, each needs `?key=` or the `aeg-sas-key` / `x-tilewright-key` header. Other event
types are ignored with 200. A malformed payload is a 400, a URL outside the configured stores a 403, a
missing blob (when the event has no etag) a 404, a blob of a store this server has no settings for (no
Azure account, no S3 endpoint or credentials) a 503 "not configured" naming the settings, so that Event
Grid and S3 webhooks retry it once the operator has set them (they never retry a 4xx); a batch is
processed event by event and answers with the worst status among them, listing what happened to each.
Every status is declared in the route's OpenAPI `responses` (`EVENT_RESPONSES`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tilewright.config import Settings
from tilewright.errors import TilewrightError, one_line
from tilewright.events.parse import MAX_EVENT_BYTES, EventSource, Headers, OriginRefusedError, Parsed
from tilewright.events.submit import submit_blob
from tilewright.server.deps import executor_of, settings_of
from tilewright.server.errors import ApiError
from tilewright.server.limits import allow_body
from tilewright.storage import NotConfiguredError, open_url

log = logging.getLogger(__name__)
router = APIRouter(tags=["events"])

_ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "detail": {"type": "string"},
        "results": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["error", "detail"],
}


def _answer(description: str, schema: dict[str, Any] = _ERROR) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


#: what `POST /events/<name>` answers (for a batch: the worst status among its events, each one's in `results`)
EVENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _answer(
        "Every event submitted, a duplicate of one submitted before, or ignored (another type, a filtered name), "
        'listed in `results`; or a handshake\'s reply (Event Grid: `{"validationResponse": CODE}`)',
        {"type": "object"},
    ),
    400: _answer("Not valid JSON, not in the source's schema, or a blob URL with no blob in it"),
    401: _answer("The events key (TILEWRIGHT_EVENTS_KEY) is set and the request does not carry it"),
    403: _answer("A blob URL outside the configured account, bucket or roots"),
    404: _answer("The blob does not exist (an event without an etag is checked at once)"),
    413: _answer("The payload is over 1 MB (Event Grid's batch limit)"),
    503: _answer(
        "Not configured: the blob's store has no settings on this server (the detail names them), or the store "
        "or the job database is unavailable; retried by the sender"
    ),
}
#: what `OPTIONS /events/<name>` (a webhook handshake) answers
HANDSHAKE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The origin is allowed (`WebHook-Allowed-Origin`)"},
    401: EVENT_RESPONSES[401],
    403: _answer("The origin is not in TILEWRIGHT_WEBHOOK_ALLOWED_ORIGINS"),
}


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
    """The request body, refused past the event size limit without reading it all (`server.limits`: a declared
    length over it at once, a streamed one as it passes it)."""
    allow_body(request.scope, MAX_EVENT_BYTES, "Event Grid's batch limit of 1 MB")
    return await request.body()


def _submit_all(request: Request, parsed: Parsed) -> JSONResponse:
    settings, executor = settings_of(request), executor_of(request)
    results: list[dict[str, Any]] = [{"status": "ignored", **item} for item in parsed.ignored]
    worst, unconfigured = 200, False
    for blob in parsed.blobs:
        try:
            outcome = submit_blob(
                settings, executor, blob.url, etag=blob.etag, version=blob.version, origin=blob.origin
            )
        except TilewrightError as exc:
            status = exc.http_status if 400 <= exc.http_status < 500 else 503
            worst = max(worst, status)
            unconfigured = unconfigured or isinstance(exc, NotConfiguredError)
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
            "error": "bad request" if worst < 500 else "not configured" if unconfigured else "unavailable",
            "detail": "; ".join(r["error"] for r in results if r["status"] == "rejected"),
            **body,
        }
    return JSONResponse(body, status_code=worst)


def _receive(source: EventSource) -> Callable[[Request], Awaitable[Response]]:
    """The `POST /events/<name>` endpoint of a source: parse, then answer its own reply or submit each blob."""

    async def receive(request: Request) -> Response:
        _check_key(request)
        parsed = source.parse(dict(request.headers), await _body(request))
        if parsed.reply is not None:  # a handshake carried in the POST: nothing in it is submitted
            log.info("%s subscription validated", source.name)
            return JSONResponse(parsed.reply)
        return await run_in_threadpool(_submit_all, request, parsed)

    return receive


def _answer_handshake(handshake: Callable[[Headers, Settings], dict[str, str]]) -> Callable[[Request], Response]:
    """The `OPTIONS /events/<name>` endpoint of a source whose webhook validates with a handshake."""

    def answer(request: Request) -> Response:
        _check_key(request)
        try:
            headers = handshake(dict(request.headers), settings_of(request))
        except OriginRefusedError as exc:
            raise ApiError(403, exc.reason) from None
        return Response(status_code=200, headers=headers)

    return answer


def source_routes(sources: Iterable[EventSource]) -> APIRouter:
    """`POST /events/<name>` (and `OPTIONS` where it has a handshake) for each registered source.

    Built by `create_app` from `events.sources.SOURCES` as it is then: a new source (one module in
    events/sources/ and one line there) is served without an edit here.
    """
    routes = APIRouter(tags=["events"])
    for source in sources:
        if source.handshake is not None:
            routes.add_api_route(
                f"/events/{source.name}",
                _answer_handshake(source.handshake),
                methods=["OPTIONS"],
                name=f"{source.name}_handshake",
                description=source.handshake_description,
                responses=HANDSHAKE_RESPONSES,
            )
        routes.add_api_route(
            f"/events/{source.name}",
            _receive(source),
            methods=["POST"],
            name=source.route_name or source.name,
            description=source.description,
            responses=EVENT_RESPONSES,
        )
    return routes


@router.get(
    "/storage/pyramid",
    responses={
        400: _answer("Not a storage URL tilewright knows"),
        403: EVENT_RESPONSES[403],
        404: _answer("No published pyramid there (no manifest: in progress, crashed, or absent)"),
        503: _answer("Not configured (the store has no settings here; the detail names them), or unavailable"),
    },
)
def pyramid(
    request: Request,
    url: str = Query(..., min_length=1, description="Output folder, e.g. az://c/web-slides-dzi-output/x"),
) -> dict[str, Any]:
    """The manifest of a published pyramid; 404 while it has none (in progress, crashed, or absent)."""
    store, key = open_url(url, settings_of(request))
    manifest = store.read_manifest(key)
    if manifest is None:
        raise ApiError(404, f"no published pyramid at {store.url(key)} (no manifest)")
    return manifest
