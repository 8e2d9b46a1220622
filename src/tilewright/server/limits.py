"""`BodyLimit`: every request body is bounded in bytes and in waiting time, before a route reads it.

Why not FastAPI's own `max_body_size`: its limit is fixed when a route is declared (ours come from the
settings at `create_app`), and a body whose declared Content-Length is over it is answered in plain
text, where every tilewright error is JSON. So this middleware counts the bytes as `receive` hands them
out and raises an HTTP 413 (FastAPI re-raises HTTPExceptions from its body reading, so the error
handlers answer JSON); a route that streams an upload to disk raises the limit for its own request
with `allow_body` (the upload limit), before it reads a byte.

A body that stalls (no byte for `request_read_timeout_seconds`) ends in a 408: an upload that stops
mid-body is not held open forever, and the streaming code discards its partial file as on any error.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: the scope key holding this request's body limit in bytes (set by the middleware, raised by `allow_body`)
LIMIT_KEY = "tilewright.body_limit"
TIMEOUT_SETTING = "TILEWRIGHT_REQUEST_READ_TIMEOUT_SECONDS"


class BodyTooLargeError(HTTPException):
    def __init__(self, size: int, limit: int, setting: str) -> None:
        super().__init__(413, f"request body of {size} bytes or more is over the limit of {limit} bytes ({setting})")


def allow_body(scope: Scope, limit: int, setting: str = "TILEWRIGHT_MAX_UPLOAD_BYTES") -> None:
    """Let this request's body be up to `limit` bytes (an upload route, before it reads the body)."""
    scope[LIMIT_KEY] = (limit, setting)


class BodyLimit:
    """Bounds every HTTP request body to `limit` bytes (unless its route allowed more) and `timeout` s per read."""

    def __init__(self, app: ASGIApp, limit: int, timeout: float) -> None:
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[LIMIT_KEY] = (self.limit, "TILEWRIGHT_MAX_REQUEST_BODY_BYTES")
        declared = Headers(scope=scope).get("content-length")
        received, done = 0, False

        async def bounded() -> Message:
            nonlocal received, done
            if done:  # after the body: a streaming response waiting for the client to leave waits as long as it likes
                return await receive()
            limit, setting = scope[LIMIT_KEY]
            # a declared length over the limit is refused before a byte is read (a 30 GB body is not waited for)
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise BodyTooLargeError(int(declared), limit, setting)
            try:
                async with asyncio.timeout(self.timeout):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408, f"the request body stalled: no byte for {self.timeout:g} s ({TIMEOUT_SETTING})"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(received, limit, setting)
                done = not message.get("more_body", False)
            else:
                done = True  # http.disconnect
            return message

        await self.app(scope, bounded, send)
