"""What every event source parses its payload into: `BlobEvent`s in a `Parsed`, and the `EventSource` record a
source module declares (`events/sources/`). Nothing here touches storage or HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tilewright.config import Settings
from tilewright.errors import InputError

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
MAX_EVENT_BYTES = 1024 * 1024  # Event Grid batches are at most 1 MB


class EventError(InputError):
    """A payload that is not valid JSON or not in the expected schema (HTTP 400)."""


class OriginRefusedError(EventError):
    """A webhook handshake from an origin the settings do not allow (HTTP 403)."""

    http_status = 403


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
    """What a POST carried: blob events, events ignored (with why), and `reply`: an answer the source gives
    itself instead of submitting anything (a handshake carried in a POST, as Event Grid's validation is)."""

    blobs: list[BlobEvent] = field(default_factory=list)
    reply: dict[str, Any] | None = None
    ignored: list[dict[str, str]] = field(default_factory=list)


Headers = Mapping[str, str]  # HTTP request headers, names in lower case


@dataclass(frozen=True)
class EventSource:
    """One kind of event payload, served as `POST /events/<name>` (see `events.sources.SOURCES`).

    `parse` turns the request's headers and body into a `Parsed` (raising `EventError` for a bad payload);
    `handshake`, when a source has one, answers `OPTIONS /events/<name>` with the response headers (raising
    `OriginRefusedError` to refuse). `description` is the route's text in the API docs."""

    name: str
    description: str
    parse: Callable[[Headers, bytes], Parsed]
    handshake: Callable[[Headers, Settings], dict[str, str]] | None = None
    handshake_description: str = ""
    #: the route's name (its OpenAPI operation id and summary derive from it); default: `name`
    route_name: str = ""


def load_json(body: bytes) -> Any:
    """The JSON of an event payload; `EventError` when it is too big, empty or not JSON."""
    if len(body) > MAX_EVENT_BYTES:
        raise EventError(f"event payload of {len(body)} bytes is over the limit of {MAX_EVENT_BYTES}")
    if not body.strip():
        raise EventError("empty event payload")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError(f"event payload is not valid JSON: {exc}") from None


def blob_from_storage_data(data: Any, event_id: str, origin: str) -> BlobEvent:
    """The blob of a `Microsoft.Storage.BlobCreated` event's `data` (the same in Event Grid and CloudEvents)."""
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
