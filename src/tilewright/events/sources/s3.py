"""S3 event notifications (`POST /events/s3`), as AWS (via SNS/EventBridge webhooks) and MinIO send them:
`{"Records": [...]}`; `ObjectCreated*` -> a blob (`s3://bucket/key`), other records are ignored."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from tilewright.events.parse import BlobEvent, EventError, EventSource, Headers, Parsed, load_json


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


def _parse(_headers: Headers, body: bytes) -> Parsed:
    return parse_s3(load_json(body))


SOURCE = EventSource(
    name="s3",
    description="S3 event notifications (`Records[].s3`, as AWS and MinIO send them): ObjectCreated -> a job.",
    parse=_parse,
    route_name="s3_events",  # the name the route always had: generated clients keep their operation id
)
