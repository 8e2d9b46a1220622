"""What the job kinds' parameter models share: field types (a collection name, an output kind), the
checks the server also runs on its own query parameters, the content hash of a default idempotency key,
and turning a pydantic `ValidationError` into one `InputError` line.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationError
from pydantic_core import ErrorDetails

from tilewright.errors import InputError
from tilewright.outputs import WRITERS
from tilewright.storage.manifest import file_sha256

M = TypeVar("M", bound=BaseModel)
COLLECTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _collection(name: str) -> str:
    if not COLLECTION_RE.match(name or ""):
        raise ValueError(f"invalid collection name {name!r}: use letters, digits, '.', '_' or '-' (max 100)")
    return name


def _output_kind(kind: str) -> str:
    if kind not in WRITERS:
        raise ValueError(f"unknown output kind {kind!r}; choose one of {', '.join(WRITERS)}")
    return kind


# the validators raise ValueError so that pydantic collects them with the other problems of a request
Collection = Annotated[str, AfterValidator(_collection)]
OutputKind = Annotated[str, AfterValidator(_output_kind)]


def check_collection(name: str) -> str:
    """`name` if it is a valid collection name; InputError otherwise (the upload route's query parameter)."""
    try:
        return _collection(name)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def check_output_kind(kind: str) -> str:
    """`kind` if it is an output kind (`outputs.WRITERS`); InputError otherwise."""
    try:
        return _output_kind(kind)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def parse(model: type[M], kind: str, raw: dict[str, Any]) -> M:
    """`raw` validated by `model`; InputError with one line saying what is wrong (see `explain`)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InputError(explain(model, kind, exc.errors(include_url=False))) from None


def explain(model: type[BaseModel], kind: str, errors: Sequence[ErrorDetails]) -> str:
    """One line for a request's validation errors, the most telling first: unknown parameters (all of them),
    a missing one (with its field's description), a check's own message, else pydantic's."""
    unknown = sorted(str(e["loc"][-1]) for e in errors if e["type"] == "extra_forbidden" and len(e["loc"]) == 1)
    if unknown:
        return f"unknown {kind} parameters: {', '.join(unknown)}"
    for error in errors:
        if error["type"] == "missing" and len(error["loc"]) == 1:
            name = str(error["loc"][0])
            field = model.model_fields.get(name)
            hint = f" ({field.description})" if field is not None and field.description else ""
            article = "an" if name[:1] in "aeiou" else "a"
            return f"{kind} needs {article} {name!r} parameter{hint}"
    for error in errors:
        if error["type"] == "value_error" and "error" in error.get("ctx", {}):
            return str(error["ctx"]["error"])
    first = errors[0] if errors else None
    if first is None:
        return f"bad {kind} parameters"
    where = ".".join(str(part) for part in first["loc"])
    return f"bad {kind} parameter {where}: {first['msg']}" if where else f"bad {kind} parameters: {first['msg']}"


def content_hash(path: Path) -> str:
    """sha256 of a file's bytes (`file_sha256`); of a folder, of its files' names, sizes and times (hashing GBs
    per submit is too slow)."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for item in sorted(path.rglob("*")):
        if item.is_file():
            stat = item.stat()
            digest.update(f"{item.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
