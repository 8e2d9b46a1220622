"""Convert one image or slide to a pyramid (DZI, TIFF or IIIF): the core every front end calls.

Steps: open (detect by content, check limits) -> plan (which levels copy the source's stored
tiles: outputs/passthrough.py) -> write (libvips, streaming, into staging; stored tiles copied)
-> publish (atomic rename) -> summarise. Errors are `TilewrightError`s
with one-line reasons; staging is always removed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyvips

from tilewright.config import Settings, get_settings
from tilewright.errors import CancelledError, InputError, OutputWriteError, TilewrightError, vips_error
from tilewright.formats import SlideReader, open_slide
from tilewright.outputs import WRITERS, Plan, PyramidWriter, WriteOptions
from tilewright.outputs.base import tile_count
from tilewright.outputs.iiif import check_id, served_id
from tilewright.outputs.passthrough import LevelPath, PassPlan, plan_tiff, write_tiff
from tilewright.pipeline import ProgressFn, Runner, Step, never, no_progress
from tilewright.staging import remove_staging


@dataclass
class ConvertResult:
    source: str
    kind: str
    output: str
    paths: list[str]
    width: int
    height: int
    levels: int
    tiles: int
    bytes: int
    seconds: float
    dry_run: bool = False
    reader: str = ""
    tiles_copied: int = 0  # stored source tiles copied as they are (pass-through)
    tiles_rendered: int = 0  # tiles decoded from the source and encoded again
    #: which path each output level took and why (`outputs.passthrough.PassPlan.to_dict`)
    passthrough: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Context:
    source: Path
    kind: str
    output: Path
    options: WriteOptions
    settings: Settings
    dry_run: bool
    reader: SlideReader | None = None
    writer: PyramidWriter | None = None
    plan: Plan | None = None
    paths: PassPlan | None = None
    staging: Path | None = None
    staged: list[Path] = field(default_factory=list)
    files: int = 0
    bytes: int = 0


def make_options(
    kind: str,
    settings: Settings,
    *,
    tile_size: int | None = None,
    overlap: int | None = None,
    tile_format: str | None = None,
    quality: int | None = None,
    base_only: bool = False,
    overwrite: bool = False,
    iiif_id: str | None = None,
    passthrough: bool = True,
) -> WriteOptions:
    """Write options from explicit values, falling back to the settings for each kind."""
    default_size = getattr(settings, WRITERS[kind].tile_size_setting)  # each kind has its own setting
    size = tile_size or default_size
    if kind == "tiff" and size % 16:
        raise InputError(f"TIFF tile size must be a multiple of 16, not {size}")
    options = WriteOptions(
        tile_size=size,
        overlap=(settings.dzi_overlap if overlap is None else overlap) if kind == "dzi" else 0,
        tile_format=tile_format or settings.tile_format,
        quality=quality or settings.quality,
        base_only=base_only,
        overwrite=overwrite,
        passthrough=passthrough,
        tile_size_asked=tile_size is not None,
    )
    return replace(options, iiif_id=check_id(iiif_id)) if iiif_id else options


def convert(
    source: str | Path,
    output: str | Path,
    kind: str = "dzi",
    *,
    options: WriteOptions | None = None,
    settings: Settings | None = None,
    dry_run: bool = False,
    progress: ProgressFn = no_progress,
    cancelled: Callable[[], bool] = never,
) -> ConvertResult:
    settings = settings or get_settings()
    if kind not in WRITERS:
        raise InputError(f"unknown output kind {kind!r}; choose one of {', '.join(WRITERS)}")
    options = options or make_options(kind, settings)
    if kind == "iiif" and not options.iiif_id:  # no id given: the server's URL of the output, if it has one
        options = replace(options, iiif_id=served_id(Path(output), settings))
    ctx = _Context(Path(source), kind, Path(output), options, settings, dry_run)
    runner = Runner(settings.time_limit_seconds, progress, cancelled)
    started = time.perf_counter()
    steps = [
        Step("open", _open, 0.01),
        Step("plan", _plan, 0.0),
    ]
    if not dry_run:
        steps += [Step("write", lambda c: _write(c, runner), 0.97), Step("publish", _publish, 0.02)]
    try:
        runner.run(steps, ctx)
    finally:
        if ctx.staging is not None:
            remove_staging(ctx.staging)
        if ctx.reader is not None:
            ctx.reader.close()
    assert ctx.plan is not None and ctx.reader is not None and ctx.writer is not None and ctx.paths is not None
    return ConvertResult(
        source=str(ctx.source),
        kind=kind,
        output=str(ctx.writer.final_paths()[-1]),
        paths=[str(p) for p in ctx.writer.final_paths()],
        width=ctx.reader.width,
        height=ctx.reader.height,
        levels=len(ctx.plan.levels),
        tiles=ctx.files or ctx.plan.tiles,
        bytes=ctx.bytes,
        seconds=round(time.perf_counter() - started, 3),
        dry_run=dry_run,
        reader=ctx.reader.name,
        tiles_copied=ctx.paths.tiles_copied,
        tiles_rendered=ctx.paths.tiles_rendered,
        passthrough=ctx.paths.to_dict(),
    )


def _open(ctx: _Context) -> None:
    ctx.reader = open_slide(ctx.source, ctx.settings)
    if ctx.reader.mpp:  # this slide's own resolution, on a copy: callers reuse one options object for many files
        ctx.options = replace(ctx.options, mpp=ctx.reader.mpp)
    ctx.writer = WRITERS[ctx.kind](ctx.output, ctx.options)
    ctx.writer.check_output()


def _plan(ctx: _Context) -> None:
    assert ctx.reader and ctx.writer
    ctx.paths = level_paths(ctx.reader, ctx.kind, ctx.options)
    if ctx.paths.applies:
        levels = [(level.width, level.height) for level in ctx.paths.levels]
        ctx.plan = Plan(ctx.kind, ctx.writer.final_paths(), levels, sum(level.tiles for level in ctx.paths.levels))
        return
    ctx.plan = ctx.writer.plan(ctx.reader.width, ctx.reader.height)
    # the plain path: libvips renders every level from the base
    tiles = [tile_count([size], ctx.options.tile_size) for size in ctx.plan.levels]
    ctx.paths.levels = [
        LevelPath(n, w, h, 0, False, "plain path", count)
        for n, ((w, h), count) in enumerate(zip(ctx.plan.levels, tiles, strict=True))
    ]
    ctx.paths.tile_size = (ctx.options.tile_size, ctx.options.tile_size)


def level_paths(reader: SlideReader, kind: str, options: WriteOptions) -> PassPlan:
    """Which output levels of `kind` copy stored tiles of `reader` and which are rendered, and why."""
    if kind == "tiff":
        return plan_tiff(reader, options)
    return PassPlan(False, f"pass-through is built for TIFF output; {kind} tiles are rendered")


def _write(ctx: _Context, runner: Runner) -> None:
    assert ctx.reader and ctx.writer
    if ctx.settings.vips_concurrency:
        pyvips.concurrency_set(ctx.settings.vips_concurrency)
    ctx.staging = ctx.writer.staging_dir()
    watched: list[Callable[[], bool]] = []
    try:
        if ctx.paths is not None and ctx.paths.applies:
            ctx.staged = _pass_through(ctx, runner, watched)
        else:
            image = ctx.reader.level_image(0, sequential=True)
            watched.append(runner.watch(image))
            ctx.staged = ctx.writer.write(image, ctx.staging)
    except pyvips.Error as exc:
        if any(killed() for killed in watched):
            runner.check()  # raises the CancelledError that explains why
            raise CancelledError("cancelled") from exc
        raise _explain(ctx, exc) from exc
    failure = ctx.reader.read_failure()
    if failure is not None:
        raise failure


def _pass_through(ctx: _Context, runner: Runner, watched: list[Callable[[], bool]]) -> list[Path]:
    """The TIFF of `ctx.paths`: stored tiles copied, the other levels rendered (outputs/passthrough.py)."""
    assert ctx.reader and ctx.writer and ctx.paths and ctx.staging
    base, span = runner.share()
    target = ctx.staging / ctx.writer.output.name

    def progress(fraction: float) -> None:
        runner.progress(base + span * fraction, runner.stage)

    def watch(image: pyvips.Image, report: Callable[[float], None]) -> None:
        watched.append(runner.watch(image, report=report))

    try:
        write_tiff(
            ctx.reader, ctx.paths, ctx.options, target, ctx.staging, watch=watch, check=runner.check, progress=progress
        )
    except OSError as exc:  # libvips' errors are pyvips.Errors: this is tifffile writing, or a tile read
        raise OutputWriteError(f"cannot write output: {exc.strerror or exc}", path=ctx.output) from exc
    return [target]


def _publish(ctx: _Context) -> None:
    assert ctx.writer
    for staged in ctx.staged:
        files, size = _measure(staged)
        ctx.files += files
        ctx.bytes += size
    ctx.writer.publish(ctx.staged)


def _measure(path: Path) -> tuple[int, int]:
    """(tiles, bytes) of a staged output; a single file (TIFF) counts no tiles here (the plan has them)."""
    if path.is_file():
        return 0, path.stat().st_size
    tiles = size = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            size += os.stat(os.path.join(root, name)).st_size
            tiles += not name.endswith((".json", ".xml"))
    return tiles, size


def _explain(ctx: _Context, exc: pyvips.Error) -> TilewrightError:
    """A libvips failure as a user-facing error: a failed tile read, else the input's or the output's fault."""
    assert ctx.reader
    failure = ctx.reader.read_failure()
    if failure is not None:
        return failure
    return vips_error(exc, source=ctx.source, output=ctx.output, lines=2)
