"""The URL table of the tile service: every tile URL shape is written here once.

The routes register `TileUrl.template`, the fast path (`fastpath.py`) matches `TileUrl.match`
and names its answers `TileUrl.route` (the name the metrics middleware reads from the router
for the routes' answers), and links in documents are filled in with `TileUrl.url`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from starlette.convertors import Convertor, register_url_convertor

from tilewright.server import iiif
from tilewright.server.errors import ApiError

ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
ID = re.compile(rf"^{ID_PATTERN}$")


class IdConvertor(Convertor[str]):
    """`{image_id:id}` in a route: an image id and nothing else. Why: with a plain `{image_id}`,
    `/images/{image_id}` also matched `/images/X.dzi`, so a DELETE there was routed to the image's delete
    and a 405 named DELETE among the methods of the DZI (found by tests/test_contract.py)."""

    regex = ID_PATTERN

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


ID_CONVERTOR = "id"
register_url_convertor(ID_CONVERTOR, IdConvertor())
FORMAT_ALIASES = MappingProxyType({"jpeg": "jpg"})
"""Format names a URL may use besides the keys of `iiif.FORMATS` (the formats of every tile route)."""

_FIELD = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True)
class TileUrl:
    """One URL shape: a router template (`{name}` or `{name:int}`) and, for the fast path, what each field
    may be (`patterns`; the image id is always `ID_PATTERN`, any other field defaults to one path segment)."""

    template: str
    patterns: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def route(self) -> str:
        """The template without convertors: the route name in metrics, as Starlette's `path_format`."""
        return _FIELD.sub(r"{\1}", self.template)

    @cached_property
    def regex(self) -> re.Pattern[str]:
        parts = _FIELD.split(self.template)  # literal, field, literal, field, ..., literal
        pattern = "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>{self._pattern(part)})" for i, part in enumerate(parts)
        )
        return re.compile(f"^{pattern}$")

    def _pattern(self, name: str) -> str:  # the image id's own pattern whatever its template says
        return ID_PATTERN if name == "image_id" else self.patterns.get(name, "[^/]+")

    def match(self, path: str) -> dict[str, str] | None:
        """The fields of `path` if it has this shape (as strictly as the fast path wants), else None."""
        found = self.regex.match(path)
        return None if found is None else found.groupdict()

    def url(self, **fields: str | int) -> str:
        """This URL with its fields filled in (a path, no host)."""
        return self.route.format(**fields)


_TILE_FORMATS = "|".join([*iiif.FORMATS, *FORMAT_ALIASES])
#: the schema's pattern for a format parameter: the same names in any case, as `parse_format` takes them
#: (written out per letter: the schema's regex dialect has no case-insensitive flag)
FORMAT_PATTERN = (
    "^(" + "|".join("".join(f"[{c.lower()}{c.upper()}]" for c in name) for name in _TILE_FORMATS.split("|")) + ")$"
)

DZI = TileUrl("/images/{image_id:id}.dzi")
DZ_TILE = TileUrl(
    "/images/{image_id:id}_files/{level:int}/{col:int}_{row:int}.{fmt}",
    {"level": r"\d{1,2}", "col": r"\d{1,9}", "row": r"\d{1,9}", "fmt": _TILE_FORMATS},
)
IIIF_BASE = TileUrl("/iiif/3/{image_id:id}")
IIIF_INFO = TileUrl("/iiif/3/{image_id:id}/info.json")
IIIF_IMAGE = TileUrl("/iiif/3/{image_id:id}/{region}/{size}/{rotation}/{quality_format}")
THUMBNAIL = TileUrl("/images/{image_id:id}/thumbnail")
ASSOCIATED = TileUrl("/images/{image_id:id}/associated/{name}")
REGION = TileUrl("/images/{image_id:id}/region")
INFO = TileUrl("/images/{image_id:id}/info")
CACHE_STATS = TileUrl("/tiles/cache")


def parse_format(fmt: str) -> str:
    """The format named in a URL as a key of `iiif.FORMATS` (the formats of every tile route), jpeg being jpg."""
    fmt = fmt.lower()
    fmt = FORMAT_ALIASES.get(fmt, fmt)
    if fmt not in iiif.FORMATS:
        raise ApiError(400, f"unsupported image format {fmt!r}; choose {', '.join(iiif.FORMATS)}")
    return fmt
