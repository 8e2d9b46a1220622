"""Receiving an upload: the body is streamed to a file in chunks (multipart or raw), hashed on the way,
and stopped the moment it passes the byte limit. Nothing is held in memory, whatever the size."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException

from tilewright.formats import accepted_suffixes
from tilewright.server.errors import ApiError
from tilewright.server.limits import allow_body

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Received:
    path: Path
    filename: str
    size: int
    sha256: str
    fields: dict[str, str]
    name: str = ""  # the file's name as the client sent it, for people (`uploaded_name`); never a path


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def uploaded_name(name: str | None, safe: str) -> str:
    """The name a person gave the file (folders and control characters dropped, at most 255 characters),
    kept to be shown; the file on disk is named `safe` (`safe_filename`), which is used when nothing is left."""
    base = _CONTROL.sub("", (name or "").replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return base[:255] or safe


def safe_filename(name: str | None) -> str:
    """A plain file name (no folders, no odd characters); the suffix is what tells the type."""
    base = Path((name or "").replace("\\", "/")).name
    base = _SAFE.sub("_", base).strip("._") or "upload"
    return base[:200]


def check_type(filename: str) -> None:
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    accepted = accepted_suffixes()  # the suffixes the readers declare, plug-ins' included
    if suffix not in accepted:
        raise ApiError(
            415,
            f"{filename!r}: unsupported file type {suffix or '(no extension)'}; accepted: {' '.join(sorted(accepted))}",
        )


class _Sink:
    """The file being written, its hash and the byte limit."""

    def __init__(self, folder: Path, limit: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f".incoming-{uuid.uuid4().hex}"
        self.handle = open(self.path, "wb")
        self.digest = hashlib.sha256()
        self.size = 0
        self.limit = limit

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise ApiError(413, f"upload larger than the limit of {self.limit} bytes (TILEWRIGHT_MAX_UPLOAD_BYTES)")
        self.digest.update(data)
        self.handle.write(data)

    def close(self) -> None:
        self.handle.close()

    def discard(self) -> None:
        self.handle.close()
        self.path.unlink(missing_ok=True)


async def stream_body(
    request: Request,
    folder: Path,
    limit: int,
    *,
    empty: str,
    filename: str = "",
    setting: str = "TILEWRIGHT_MAX_UPLOAD_BYTES",
) -> Received:
    """The raw request body, streamed to a hidden file in `folder` and hashed on the way.

    413 past `limit` bytes (`server.limits.BodyLimit`, which also refuses a declared Content-Length over it
    before a byte is read), 400 with the message `empty` when there is no body; on any error the file is
    removed, otherwise it is the caller's to keep or `discard`.
    """
    allow_body(request.scope, limit, setting)  # the upload limit, not the one for JSON bodies
    sink = _Sink(folder, limit)
    try:
        async for chunk in request.stream():
            sink.write(chunk)
        sink.close()
        if sink.size == 0:
            raise ApiError(400, empty)
    except BaseException:
        sink.discard()
        raise
    return Received(sink.path, filename, sink.size, sink.digest.hexdigest(), {})


async def receive(request: Request, folder: Path, limit: int) -> Received:
    """Stream the request body to a hidden file in `folder`; ApiError (400/411/413/415) on a bad upload."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type == b"multipart/form-data":
        allow_body(request.scope, limit + 2**20)  # + the part headers and boundaries around the file
        return await _multipart(request, folder, limit, options.get(b"boundary"))
    given = (
        request.query_params.get("filename")
        or request.headers.get("x-filename")
        or _disposition_name(request.headers.get("content-disposition"))
    )
    filename = safe_filename(given)
    check_type(filename)
    received = await stream_body(
        request,
        folder,
        limit,
        filename=filename,
        empty="empty upload: send the file as the request body or as multipart field 'file'",
    )
    received.name = uploaded_name(given, filename)
    return received


def _disposition_name(header: str | None) -> str | None:
    if not header:
        return None
    _kind, options = parse_options_header(header)
    name = options.get(b"filename")
    return name.decode("utf-8", "replace") if name else None


async def _multipart(request: Request, folder: Path, limit: int, boundary: bytes | None) -> Received:
    if not boundary:
        raise ApiError(400, "multipart upload without a boundary")
    state: dict = {"headers": {}, "name": [], "value": [], "part": None, "field": None, "buffer": bytearray()}
    fields: dict[str, str] = {}
    result: dict = {}

    def on_part_begin() -> None:
        state["headers"] = {}
        state["part"] = None

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["name"].append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"].append(data[start:end])

    def on_header_end() -> None:
        state["headers"][b"".join(state["name"]).lower()] = b"".join(state["value"]).strip()
        state["name"].clear()
        state["value"].clear()

    def on_headers_finished() -> None:
        _disp, options = parse_options_header(state["headers"].get(b"content-disposition", b""))
        field = (options.get(b"name") or b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is not None and "sink" not in result:
            given = filename.decode("utf-8", "replace")
            name = safe_filename(given)
            check_type(name)
            result["filename"], result["name"] = name, uploaded_name(given, name)
            result["sink"] = _Sink(folder, limit)
            state["part"] = "file"
        else:
            state["part"] = "field"
            state["field"] = field
            state["buffer"] = bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["part"] == "file":
            result["sink"].write(data[start:end])
        elif state["part"] == "field":
            state["buffer"] += data[start:end]
            if len(state["buffer"]) > 65536:
                raise ApiError(413, "a form field is larger than 64 KiB")

    def on_part_end() -> None:
        if state["part"] == "field" and state["field"]:
            fields[state["field"]] = state["buffer"].decode("utf-8", "replace")
        state["part"] = None

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except (ApiError, HTTPException):  # over a limit, or stalled: said as it is
        if "sink" in result:
            result["sink"].discard()
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed body is the client's problem
        if "sink" in result:
            result["sink"].discard()
        raise ApiError(400, f"malformed multipart body: {exc}") from None
    if "sink" not in result:
        raise ApiError(400, "multipart upload without a file part (send it as field 'file')")
    sink: _Sink = result["sink"]
    sink.close()
    if sink.size == 0:
        sink.discard()
        raise ApiError(400, "empty upload")
    return Received(sink.path, result["filename"], sink.size, sink.digest.hexdigest(), fields, result["name"])


def discard(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
