"""Running a recipe: open the source once, make every output into staging, write metadata, publish.

A failed, cancelled or timed-out run leaves nothing at OUTDIR: outputs are made into a private
staging folder beside it and moved in only once all are made, `metadata.json` last.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyvips

from tilewright.config import Settings, get_settings
from tilewright.convert import convert, make_options
from tilewright.errors import OutputExistsError
from tilewright.ops import Source
from tilewright.pipeline import ProgressFn, Runner, never, no_progress
from tilewright.pipeline import Step as RunStep
from tilewright.recipes.catalogue import load_recipe
from tilewright.recipes.context import RecipeRun, explain
from tilewright.recipes.lanes import make_images
from tilewright.recipes.metadata import ratio, size_of, write_metadata
from tilewright.recipes.plan import decode_once, plan_lanes, weight
from tilewright.recipes.schema import Output, Recipe
from tilewright.staging import STAGING_PREFIX, make_staging, remove_staging

#: name of the decode-once copy inside the staging folder (removed before publishing)
DECODED_PREFIX = ".tw-decoded-"


def run_recipe(
    source_path: str | Path,
    outdir: str | Path,
    recipe: Recipe | str | None = None,
    settings: Settings | None = None,
    *,
    progress: ProgressFn = no_progress,
    cancelled: Callable[[], bool] = never,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Make every output of `recipe` for `source_path` into `outdir`; return the metadata dict.

    `progress(fraction, stage)` is called as work advances (from several threads, one
    at a time); `cancelled()` is polled between steps and during long writes. Nothing
    appears in `outdir` unless all outputs were made. Raises `TilewrightError`s:
    `InputError` for a bad source or recipe, `OutputExistsError` if an output exists
    and not `overwrite`, `CancelledError` when cancelled or over `time_limit_seconds`.

    Image outputs are made in *lanes* run side by side (`PARALLEL_OUTPUTS` threads;
    libvips releases the GIL): the thumbnails in one lane, the largest decoded once with
    shrink-on-load and the smaller ones made from it in memory; every other output (a
    full-size copy, a chain without a leading thumbnail) in a lane of its own, streamed.
    A source with no shrink-on-load that more lanes would decode than run at once (or
    that a chain reads out of order) is first decoded once into a temporary file in the
    staging folder (`_decode_once`; up to `DECODE_ONCE_MAX_BYTES` uncompressed), deleted
    as soon as the image outputs are made.
    """
    settings = settings or get_settings()
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, settings)
    runner = Runner(settings.time_limit_seconds, progress, cancelled)
    run = RecipeRun(Path(source_path), Path(outdir), recipe, settings, overwrite, runner)
    try:
        runner.check()
        progress(0.0, "open")
        _open(run)  # first: which outputs apply depends on whether the source is a slide
        assert run.source is not None
        todo = [o for o in recipe.outputs if o.applies_to(run.source.is_slide)]
        run.lanes = plan_lanes(run.source, [o for o in todo if o.kind == "image"])
        steps = [RunStep("check output", _check_output, 0.0)]
        if decode_once(run.source, run.lanes):
            steps.append(RunStep("decode", _decode, 3.0))
        if run.lanes:
            steps.append(RunStep(run.lanes[0].outputs[0].name, _make_images, sum(lane.weight for lane in run.lanes)))
        steps += [RunStep(output.name, _maker(output), weight(output)) for output in todo if output.kind != "image"]
        if recipe.metadata:
            steps.append(RunStep("metadata", write_metadata, 0.01))
        steps.append(RunStep("publish", _publish, 0.01))
        runner.run(steps, run)
    finally:
        _drop_decoded(run)
        if run.staging is not None and run.staging.exists():
            remove_staging(run.staging)
        if run.source is not None:
            run.source.close()
    return run.metadata


def _open(run: RecipeRun) -> None:
    run.source = Source(run.source_path, run.settings)
    run.original_bytes = size_of(run.source_path)
    if run.settings.vips_concurrency:
        pyvips.concurrency_set(run.settings.vips_concurrency)


def _check_output(run: RecipeRun) -> None:
    outdir = run.outdir
    if outdir.exists() and not outdir.is_dir():
        raise OutputExistsError("output is not a folder", path=outdir)
    if outdir.is_dir() and not run.overwrite:
        names = [run.recipe.metadata] if run.recipe.metadata else []
        for output in run.recipe.outputs:
            names += [output.name + suffix for suffix in ("", ".dzi", "_files")]
        for name in names:
            if (outdir / name).exists() or any(outdir.glob(f"{name}.*")) or any(outdir.glob(f"{name}_[0-9]*")):
                raise OutputExistsError("output exists; pass --overwrite to replace it", path=outdir / name)
    run.staging = make_staging(outdir.parent, outdir.name)


def _decode(run: RecipeRun) -> None:
    """Decode the source once into an uncompressed file in the staging folder (a killed run's staging,
    copy included, is removed by the next run of the same output)."""
    assert run.source is not None and run.staging is not None
    run.decoded = run.staging / f"{DECODED_PREFIX}{uuid.uuid4().hex[:8]}.v"
    watched: list[Callable[[], bool]] = []

    def watch(image: pyvips.Image) -> None:
        watched.append(run.runner.watch(image))

    try:
        run.source.decode_to(run.decoded, watch=watch)
    except pyvips.Error as exc:
        if watched and watched[0]():
            run.runner.check()
        raise explain(run, exc) from exc


def _drop_decoded(run: RecipeRun) -> None:
    if run.decoded is None:
        return
    if run.source is not None:
        run.source.release_decoded()
    run.decoded.unlink(missing_ok=True)
    run.decoded = None


def _make_images(run: RecipeRun) -> None:
    """The image outputs (`lanes.make_images`); the decode-once copy is dropped before publishing, whatever happens."""
    try:
        make_images(run)
    finally:
        _drop_decoded(run)


def _maker(output: Output) -> Callable[[RecipeRun], None]:
    """The step making a non-image output (a Deep Zoom pyramid); image outputs are made by `_make_images`."""
    return lambda run: _make_dzi(run, output)


def _make_dzi(run: RecipeRun, output: Output) -> None:
    assert run.staging is not None
    runner = run.runner
    result = convert(
        run.source_path,
        run.staging / output.name,
        "dzi",
        options=make_options("dzi", run.settings),
        settings=run.settings,
        progress=runner.sub_progress(f"{output.name}: "),
        cancelled=runner.stopped,
    )
    run.entries.append(
        {
            "name": output.name,
            "file": f"{output.name}.dzi",
            "format": "dzi",
            "kind": "dzi",
            "width": result.width,
            "height": result.height,
            "size": [result.width, result.height],
            "levels": result.levels,
            "tiles": result.tiles,
            "bytes": result.bytes,
            "compression_ratio": ratio(run.original_bytes, result.bytes),
        }
    )


def _publish(run: RecipeRun) -> None:
    """Move the staged outputs into OUTDIR, metadata last: a reader that sees metadata.json sees everything."""
    assert run.staging is not None  # the decode-once copy is gone: `_make_images` drops it before this step
    outdir = run.outdir
    if not outdir.exists():
        os.replace(run.staging, outdir)
        run.staging = None
        return
    entries = sorted(run.staging.iterdir(), key=lambda p: (p.name == run.recipe.metadata, p.suffix == ".dzi", p.name))
    trash = []
    for entry in entries:
        final = outdir / entry.name
        if final.exists() or final.is_symlink():
            if not run.overwrite:
                raise OutputExistsError("output exists; pass --overwrite to replace it", path=final)
            moved = outdir / f"{STAGING_PREFIX}old-{uuid.uuid4().hex[:8]}-{entry.name}"
            os.replace(final, moved)
            trash.append(moved)
        os.replace(entry, final)
    for old in trash:
        remove_staging(old)
