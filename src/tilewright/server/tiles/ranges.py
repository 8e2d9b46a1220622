"""Single byte ranges (RFC 9110 §14) on the image answers, for the routes and the fast path alike.

/outputs (StaticFiles) honours `Range`; the tile routes do the same, so that a client sees one
behaviour: `Accept-Ranges: bytes` on every 200, 206 with `Content-Range` for one satisfiable range,
416 with `Content-Range: bytes */size` for an unsatisfiable one. Range handling is defined for GET
only; several ranges, a malformed header, or an `If-Range` that names another representation are
answered with the whole body (the spec lets a server ignore `Range`), never an error.
"""

from __future__ import annotations

import re

from fastapi import Request
from fastapi.responses import Response

from tilewright.server.errors import error_response
from tilewright.server.tiles.service import matches

ACCEPT_RANGES = "bytes"
_SPEC = re.compile(r"bytes=(\d*)-(\d*)")


class Unsatisfiable(Exception):
    """The one range asked for starts past the end (or is an empty suffix): a 416."""


def pick(method: str, range_header: str | None, if_range: str | None, etag: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of the one range to send, or None for the whole body; `Unsatisfiable` for a 416."""
    if method != "GET" or not range_header:
        return None
    if if_range is not None and not (if_range.startswith('"') and matches(if_range, etag)):
        return None  # a date, a weak tag or another tag: the client's copy is not this one
    found = _SPEC.fullmatch(range_header.strip().replace(" ", ""))
    if found is None:
        return None  # several ranges or not bytes: the whole body
    first, last = found.groups()
    if not first:  # a suffix: the last N bytes
        if not last:
            return None
        if int(last) == 0:
            raise Unsatisfiable
        return max(0, size - int(last)), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise Unsatisfiable
    return start, min(int(last), size - 1) if last else size - 1


def content_range(first: int, last: int, size: int) -> str:
    return f"bytes {first}-{last}/{size}"


def unsatisfiable_range(size: int) -> str:
    return f"bytes */{size}"


def ranged(request: Request, response: Response) -> Response:
    """`response` (a whole image, its ETag set) as the request's `Range` asks: itself, a 206, or a 416."""
    if response.status_code != 200:
        return response
    response.headers["Accept-Ranges"] = ACCEPT_RANGES
    body = bytes(response.body)
    headers = request.headers
    try:
        chosen = pick(
            request.method, headers.get("range"), headers.get("if-range"), response.headers["etag"], len(body)
        )
    except Unsatisfiable:
        return error_response(
            416,
            f"the range {headers.get('range')!r} is past the end of this {len(body)}-byte answer",
            {"Content-Range": unsatisfiable_range(len(body)), "Accept-Ranges": ACCEPT_RANGES},
        )
    if chosen is None:
        return response
    first, last = chosen
    kept = {k: v for k, v in response.headers.items() if k != "content-length"}
    return Response(
        body[first : last + 1],
        status_code=206,
        headers={**kept, "Content-Range": content_range(first, last, len(body))},
    )
