"""One recipe run's state, shared by its steps (`run.py`) and lanes (`lanes.py`); explaining libvips errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tilewright.config import Settings
from tilewright.errors import TilewrightError, vips_error
from tilewright.ops import Source
from tilewright.pipeline import Runner
from tilewright.recipes.plan import Lane
from tilewright.recipes.schema import Recipe


@dataclass
class RecipeRun:
    source_path: Path
    outdir: Path
    recipe: Recipe
    settings: Settings
    overwrite: bool
    runner: Runner
    source: Source | None = None
    staging: Path | None = None
    original_bytes: int = 0
    entries: list[dict[str, Any]] = field(default_factory=list)  # one per file made, for metadata.json
    metadata: dict[str, Any] = field(default_factory=dict)
    lanes: list[Lane] = field(default_factory=list)
    decoded: Path | None = None  # the decode-once copy of the source, inside the staging folder


def check_read(run: RecipeRun) -> None:
    """A slide tile that failed to decode is reported, even when libvips carried on."""
    failure = run.source.reader.read_failure() if run.source else None
    if failure is not None:
        raise failure


def explain(run: RecipeRun, exc: BaseException) -> TilewrightError:
    """A libvips failure as a user-facing error, in the words `tilewright convert` uses (the input's fault:
    "image data is corrupt or truncated: REASON"; else the output's); a failed tile read first."""
    check_read(run)
    return vips_error(exc, source=run.source_path, output=run.outdir, lines=2)
