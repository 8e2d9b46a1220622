"""CloudEvents 1.0 over HTTP (`OPTIONS|POST /events/cloudevents`): binary mode (`ce-*` headers), structured
mode, or a JSON batch. `Microsoft.Storage.BlobCreated` (Event Grid's payload) and S3 `ObjectCreated` events
-> blobs; other types are ignored.

The webhook handshake (CloudEvents abuse protection) is an OPTIONS request naming its origin in
`WebHook-Request-Origin`; it is echoed back as allowed only when `webhook_allowed_origins` is empty, lists
it, or lists `*`.
"""

from __future__ import annotations

import json

from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from cloudevents.core.formats.json import JSONFormat

from tilewright.config import Settings
from tilewright.errors import one_line
from tilewright.events.parse import (
    BLOB_CREATED,
    MAX_EVENT_BYTES,
    EventError,
    EventSource,
    Headers,
    OriginRefusedError,
    Parsed,
    blob_from_storage_data,
    load_json,
)
from tilewright.events.sources.s3 import parse_s3

S3_TYPES = ("com.amazonaws.s3.ObjectCreated", "s3:ObjectCreated:Put")


def parse_cloudevents(headers: Headers, body: bytes) -> Parsed:
    """CloudEvents 1.0 over HTTP: binary mode (ce-* headers), structured mode, or a JSON batch."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    if len(body) > MAX_EVENT_BYTES:
        raise EventError(f"event payload of {len(body)} bytes is over the limit of {MAX_EVENT_BYTES}")
    events = []
    try:
        if "ce-specversion" in lowered:
            events.append(from_http_event(HTTPMessage(headers=lowered, body=body)))
        else:
            payload = load_json(body)
            items = payload if (isinstance(payload, list) or content_type.endswith("batch+json")) else [payload]
            if not isinstance(items, list):
                raise EventError("a CloudEvents batch must be a JSON array")
            for item in items:
                if not isinstance(item, dict) or "specversion" not in item:
                    raise EventError("not a CloudEvent (no 'specversion')")
                events.append(JSONFormat().read(None, json.dumps(item).encode()))
    except EventError:
        raise
    except Exception as exc:  # noqa: BLE001 - the SDK raises several types for bad events
        raise EventError(f"invalid CloudEvent: {type(exc).__name__}: {one_line(exc)}") from None
    parsed = Parsed()
    for event in events:
        kind, event_id = event.get_type(), str(event.get_id())
        if event.get_specversion() != "1.0":
            raise EventError(f"CloudEvent {event_id!r}: specversion {event.get_specversion()!r}, expected 1.0")
        if kind == BLOB_CREATED:
            data = event.get_data()
            if isinstance(data, (bytes, str)):
                try:
                    data = json.loads(data)
                except ValueError:
                    raise EventError(f"CloudEvent {event_id!r}: data is not JSON") from None
            parsed.blobs.append(blob_from_storage_data(data, event_id, "cloudevents"))
        elif kind in S3_TYPES:
            parsed.blobs.extend(parse_s3(event.get_data()).blobs)
        else:
            parsed.ignored.append({"id": event_id, "type": kind, "reason": "event type not handled"})
    return parsed


def handshake(headers: Headers, settings: Settings) -> dict[str, str]:
    """The response headers of the webhook validation; `OriginRefusedError` for an origin not allowed."""
    origin = headers.get("webhook-request-origin")
    if not origin:
        return {"Allow": "OPTIONS, POST"}
    allowed = settings.webhook_allowed_origins
    if allowed and origin not in allowed and "*" not in allowed:
        raise OriginRefusedError(f"origin {origin!r} is not in TILEWRIGHT_WEBHOOK_ALLOWED_ORIGINS")
    return {"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*", "Allow": "OPTIONS, POST"}


SOURCE = EventSource(
    name="cloudevents",
    description="CloudEvents 1.0, structured or binary mode or a batch; Microsoft.Storage.BlobCreated -> a job.",
    parse=parse_cloudevents,
    handshake=handshake,
    handshake_description="CloudEvents webhook validation (abuse protection): echo the allowed origin.",
)
