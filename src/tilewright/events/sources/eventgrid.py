"""Event Grid schema (`POST /events/eventgrid`): an array of events (one object is accepted too).

The subscription handshake is carried in a POST: a `SubscriptionValidationEvent` is answered with its
`validationCode`, and nothing in that POST is submitted. `BlobCreated` -> a blob; other types are ignored.
"""

from __future__ import annotations

from typing import Any

from tilewright.events.parse import (
    BLOB_CREATED,
    EventError,
    EventSource,
    Headers,
    Parsed,
    blob_from_storage_data,
    load_json,
)

VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"


def parse_eventgrid(payload: Any) -> Parsed:
    """An Event Grid schema POST: an array of events (a single object is accepted too)."""
    events = payload if isinstance(payload, list) else [payload]
    parsed = Parsed()
    for index, event in enumerate(events):
        if not isinstance(event, dict) or not isinstance(event.get("eventType"), str):
            raise EventError(f"event {index} is not in the Event Grid schema (no 'eventType')")
        event_id = str(event.get("id") or index)
        kind = event["eventType"]
        if kind == VALIDATION:
            code = (event.get("data") or {}).get("validationCode") if isinstance(event.get("data"), dict) else None
            if not isinstance(code, str) or not code:
                raise EventError("SubscriptionValidation event without data.validationCode")
            parsed.reply = {"validationResponse": code}
        elif kind == BLOB_CREATED:
            parsed.blobs.append(blob_from_storage_data(event.get("data"), event_id, "eventgrid"))
        else:
            parsed.ignored.append({"id": event_id, "type": kind, "reason": "event type not handled"})
    return parsed


def _parse(_headers: Headers, body: bytes) -> Parsed:
    return parse_eventgrid(load_json(body))


SOURCE = EventSource(
    name="eventgrid",
    description="Event Grid schema: answers the validation handshake; BlobCreated -> a job per blob version.",
    parse=_parse,
)
