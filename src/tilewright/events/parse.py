"""Event payloads -> `BlobEvent`s: Event Grid schema, CloudEvents 1.0 (structured, binary, batch; with the
Event Grid BlobCreated payload), and S3 event notifications (AWS and MinIO). Nothing here touches storage."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from tilewright.errors import InputError, one_line

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
MAX_EVENT_BYTES = 1024 * 1024  # Event Grid batches are at most 1 MB


class EventError(InputError):
    """A payload that is not valid JSON or not in the expected schema (HTTP 400)."""


@dataclass
class BlobEvent:
    """A blob was created (or overwritten): where it is and which version."""

    url: str
    etag: str = ""
    version: str = ""
    size: int | None = None
    event_id: str = ""
    event_type: str = BLOB_CREATED
    origin: str = ""


@dataclass
class Parsed:
    """What a POST carried: blob events, a validation handshake code, and events ignored (with why)."""

    blobs: list[BlobEvent] = field(default_factory=list)
    validation_code: str | None = None
    ignored: list[dict[str, str]] = field(default_factory=list)


def load_json(body: bytes) -> Any:
    if len(body) > MAX_EVENT_BYTES:
        raise EventError(f"event payload of {len(body)} bytes is over the limit of {MAX_EVENT_BYTES}")
    if not body.strip():
        raise EventError("empty event payload")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError(f"event payload is not valid JSON: {exc}") from None


def _blob_from_storage_data(data: Any, event_id: str, origin: str) -> BlobEvent:
    if not isinstance(data, dict) or not isinstance(data.get("url"), str) or not data["url"]:
        raise EventError(f"event {event_id!r}: BlobCreated data has no 'url'")
    size = data.get("contentLength")
    return BlobEvent(
        url=data["url"],
        etag=str(data.get("eTag") or data.get("etag") or "").strip('"'),
        version=str(data.get("versionId") or ""),
        size=size if isinstance(size, int) else None,
        event_id=event_id,
        origin=origin,
    )


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
            parsed.validation_code = code
        elif kind == BLOB_CREATED:
            parsed.blobs.append(_blob_from_storage_data(event.get("data"), event_id, "eventgrid"))
        else:
            parsed.ignored.append({"id": event_id, "type": kind, "reason": "event type not handled"})
    return parsed


def parse_cloudevents(headers: dict[str, str], body: bytes) -> Parsed:
    """CloudEvents 1.0 over HTTP: binary mode (ce-* headers), structured mode, or a JSON batch."""
    from cloudevents.core.bindings.http import HTTPMessage, from_http_event
    from cloudevents.core.formats.json import JSONFormat

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
            parsed.blobs.append(_blob_from_storage_data(data, event_id, "cloudevents"))
        elif kind in ("com.amazonaws.s3.ObjectCreated", "s3:ObjectCreated:Put"):
            parsed.blobs.extend(parse_s3(event.get_data()).blobs)
        else:
            parsed.ignored.append({"id": event_id, "type": kind, "reason": "event type not handled"})
    return parsed


def parse_s3(payload: Any) -> Parsed:
    """S3 event notifications as AWS (via SNS/EventBridge webhooks) and MinIO send them: `{"Records": [...]}`."""
    if not isinstance(payload, dict) or not isinstance(payload.get("Records"), list):
        raise EventError("not an S3 event notification (no 'Records' array)")
    parsed = Parsed()
    for index, record in enumerate(payload["Records"]):
        if not isinstance(record, dict) or not isinstance(record.get("s3"), dict):
            raise EventError(f"record {index} has no 's3' object")
        name = str(record.get("eventName") or "")
        event_id = (
            str((record.get("responseElements") or {}).get("x-amz-request-id") or index)
            if isinstance(record.get("responseElements"), dict)
            else str(index)
        )
        s3 = record["s3"]
        bucket = (s3.get("bucket") or {}).get("name") if isinstance(s3.get("bucket"), dict) else None
        obj = s3.get("object") if isinstance(s3.get("object"), dict) else None
        if not name.replace("s3:", "").startswith("ObjectCreated"):
            parsed.ignored.append({"id": event_id, "type": name, "reason": "event type not handled"})
            continue
        if not isinstance(bucket, str) or not bucket or obj is None or not isinstance(obj.get("key"), str):
            raise EventError(f"record {index}: s3.bucket.name and s3.object.key are required")
        key = unquote_plus(obj["key"])  # S3 URL-encodes keys in notifications ('+' is a space)
        size = obj.get("size")
        parsed.blobs.append(
            BlobEvent(
                url=f"s3://{bucket}/{key}",
                etag=str(obj.get("eTag") or "").strip('"'),
                version=str(obj.get("versionId") or ""),
                size=size if isinstance(size, int) else None,
                event_id=event_id,
                event_type=name,
                origin="s3",
            )
        )
    return parsed
