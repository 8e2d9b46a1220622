"""Which blobs make jobs (per-source container/prefix/suffix filters; by default every format a reader
declares), the exactly-once job key, and where a blob's pyramid is published (the output template)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from tilewright.config import Settings
from tilewright.errors import InputError
from tilewright.events.layout import event_recipe, written_prefixes
from tilewright.formats import accepted_suffixes
from tilewright.storage.keys import clean_key, join_key, key_parts
from tilewright.storage.manifest import MANIFEST

_FIELD = re.compile(r"\{[^{}]*\}")


def job_key(url: str, etag: str, version: str = "", recipe: str = "") -> str:
    """One job per blob *version*: the canonical URL plus its etag (or version id). A redelivered or
    duplicated event gives the same key (one job); a rewritten blob has a new etag (a new job). A job that
    runs a recipe (`TILEWRIGHT_EVENT_RECIPE`) keys on it too; the Deep Zoom job's key is as it always was."""
    material = f"{url}\0{etag}\0{version}" + (f"\0recipe:{recipe}" if recipe else "")
    digest = hashlib.sha256(material.encode()).hexdigest()
    return f"blob:{digest}"


def output_segments(settings: Settings) -> set[str]:
    """Literal folder names of the output template (e.g. `web-slides-dzi-output`): blobs under them are ours."""
    segments = set()
    for part in settings.output_template.split("/"):
        if part and not _FIELD.search(part):
            segments.add(part)
    return segments


class SourceFilter(BaseModel):
    """One entry of `TILEWRIGHT_EVENT_SOURCES`: blobs in `container` (or `bucket`; any when empty) under
    `prefix` whose names end with one of `suffixes` (default `event_suffixes`; a list or comma-separated)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    container: str | None = None
    bucket: str | None = None
    prefix: str | None = None
    suffixes: list[str] | str | None = None


@dataclass(frozen=True)
class _Source:
    container: str
    prefix: str
    suffixes: tuple[str, ...]


def _sources(settings: Settings) -> list[_Source]:
    checked = []
    for index, entry in enumerate(settings.event_sources):
        try:
            source = SourceFilter.model_validate(entry)
        except ValidationError:
            raise InputError(
                f"TILEWRIGHT_EVENT_SOURCES[{index}] must be an object with container (or bucket), prefix and suffixes"
            ) from None
        suffixes = source.suffixes or default_suffixes(settings)
        if isinstance(suffixes, str):
            suffixes = [s for s in suffixes.split(",") if s.strip()]
        checked.append(
            _Source(
                container=source.container or source.bucket or "",
                prefix=clean_key(source.prefix or ""),
                suffixes=tuple(s.strip().lower() for s in suffixes),
            )
        )
    return checked


def default_suffixes(settings: Settings) -> list[str]:
    """`TILEWRIGHT_EVENT_SUFFIXES`, or (empty, the default) every suffix a reader declares, plug-ins' included:
    an event for any file tilewright can read makes a job."""
    return [s.lower() for s in settings.event_suffixes] or sorted(accepted_suffixes())


def _layout_prefixes(settings: Settings) -> list[str]:
    """Where the event recipe's blob layout writes (with and without the output store's own prefix)."""
    recipe = event_recipe(settings)
    if recipe is None:
        return []
    base = ""
    if "://" in settings.output_store:  # `az://derived/x`: the layout's keys start `derived/x/`
        parts = urlsplit(settings.output_store)
        base = join_key(parts.netloc.split("@", 1)[0], parts.path)
    return sorted(set(written_prefixes(recipe)) | set(written_prefixes(recipe, base)))


def accept(key: str, settings: Settings, *, local: bool = False) -> tuple[bool, str]:
    """(True, '') if the blob at `key` (`container/path`) should be converted; else (False, why not)."""
    key = clean_key(key)
    parts = key.split("/")
    outputs = output_segments(settings)
    if parts[-1] == MANIFEST or any(p in outputs for p in parts[:-1]):
        return False, "inside an output folder"
    if key.startswith(tuple(_layout_prefixes(settings))):
        return False, f"inside a folder the {settings.event_recipe} recipe writes"
    if any(p.startswith(".") for p in parts):
        return False, "hidden or staging file"
    sources = _sources(settings)
    container, _, path = key.partition("/")
    if not sources:
        suffixes = default_suffixes(settings)
        if key.lower().endswith(tuple(suffixes)):
            return True, ""
        return False, f"name does not end with one of {', '.join(suffixes)}"
    for source in sources:
        if local:  # a local store has no containers: the filter's prefix applies to the whole key
            inside = key.startswith(source.prefix)
        else:
            inside = (not source.container or source.container == container) and (
                not source.prefix or path.startswith(source.prefix)
            )
        if inside and key.lower().endswith(source.suffixes):
            return True, ""
    return False, "no configured source (TILEWRIGHT_EVENT_SOURCES) matches its container, prefix and suffix"


def check_template(template: str) -> None:
    try:
        template.format(container="c", path="p", dir="d", name="n", stem="s", etag="e")
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(f"bad TILEWRIGHT_OUTPUT_TEMPLATE {template!r}: {exc}") from None


def output_prefix(key: str, etag: str, settings: Settings, base: str = "") -> str:
    """The output folder (a key in the output store) of the blob at `key`."""
    check_template(settings.output_template)
    fields = key_parts(key)
    rendered = settings.output_template.format(**fields, etag=etag.strip('"'))
    prefix = join_key(base, rendered)
    if not prefix:
        raise InputError(f"output template {settings.output_template!r} gives an empty folder for {key!r}")
    return prefix
