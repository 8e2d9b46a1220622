"""Settings of the format checkers (group "Formats"), mixed into `Settings`: which readers are tried in
what order, and the resolution order file that moves them (Cytomine PIMS's `checkerResolution.csv`),
with the one reader of its rows.

The file has a header `name,resolution_order` and one row per checker: the lowest order is tried first,
an empty order or a checker not named is 0, and the readers keep their own order among equals (a
stable sort), so a negative order goes before every built-in reader and a positive one after.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from tilewright.config.groups import FORMATS

NAME, ORDER = "name", "resolution_order"
#: how PIMS names a format plug-in in the file; tilewright's reader of that name takes its row
PIMS_PLUGIN_PREFIX = "pims_plugin_format_"


def resolution_orders(path: Path) -> dict[str, int]:
    """{checker name: resolution order} from the CSV at `path` (PIMS's plug-in names reduced to the reader's
    name); `ValueError` naming the line for a file that cannot be used. Read once per version of the file."""
    stat = path.stat()  # FileNotFoundError is an OSError: the validator says the file is missing
    return _read(path.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _read(path: Path, mtime_ns: int, size: int) -> dict[str, int]:
    """The rows of one version of the file (the key changes when the file does: a new version is read)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, skipinitialspace=True)
        if not reader.fieldnames or NAME not in reader.fieldnames or ORDER not in reader.fieldnames:
            raise ValueError(f"{path}: the header must be {NAME},{ORDER}, not {','.join(reader.fieldnames or [])!r}")
        orders: dict[str, int] = {}
        for row in reader:
            name, order = (row.get(NAME) or "").strip(), (row.get(ORDER) or "").strip()
            if not name:
                continue
            try:
                orders[name.removeprefix(PIMS_PLUGIN_PREFIX)] = int(order) if order else 0
            except ValueError:
                raise ValueError(
                    f"{path} line {reader.line_num}: {ORDER} of {name!r} must be an integer or empty, not {order!r}"
                ) from None
    return orders


class CheckerSettings(BaseModel):
    format_checkers: list[str] = Field(
        [],
        description="Readers tried, in this order (empty: every built-in reader, most specific first: dicom, "
        "openslide, ometiff, vips); a built-in reader not named is not tried; plug-ins of the "
        "`tilewright.formats` entry-point group are tried after these unless named.",
        json_schema_extra=FORMATS,
    )
    checker_resolution_file: Path | None = Field(
        None,
        description="CSV file `name,resolution_order` (Cytomine PIMS's `checkerResolution.csv`) reordering the "
        "format checkers: lowest first, an empty order or a checker not named is 0, equal orders keep the "
        "`FORMAT_CHECKERS` order; PIMS's `pims_plugin_format_NAME` names the reader NAME, names of no reader "
        "are ignored (none: no reordering).",
        json_schema_extra=FORMATS,
    )

    @field_validator("checker_resolution_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                resolution_orders(value)  # a bad file fails at start-up in one line, not at the first open
            except OSError as exc:
                raise ValueError(f"cannot read {value}: {exc.strerror}") from None
        return value
