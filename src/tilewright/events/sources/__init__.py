"""The event sources: one module each, parsing its payload into `BlobEvent`s, and the registry the `/events/*`
routes are built from (`server.routes_events`).

A new source is a module here defining `SOURCE = EventSource(name=..., description=..., parse=...)` (and a
`handshake` if its webhook has one), plus one line in `SOURCES`: it is then served as `POST /events/<name>`.
"""

from __future__ import annotations

from tilewright.events.parse import EventSource
from tilewright.events.sources import cloudevents, eventgrid, s3

SOURCES: tuple[EventSource, ...] = (
    eventgrid.SOURCE,
    cloudevents.SOURCE,
    s3.SOURCE,
)
