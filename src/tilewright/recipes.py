"""Recipes: a named list of outputs, each a chain of operations plus a format, read from TOML.

`run_recipe(source, outdir, recipe)` opens the source once (limits checked), makes
every output into a private staging folder beside OUTDIR, writes `metadata.json`,
and only then publishes: a failed, cancelled or timed-out run leaves nothing at
OUTDIR. The built-in recipes live in `tilewright/builtin_recipes/`; user recipes in
`Settings.recipe_dir` (same name: the user's wins).

    name = "web"
    description = "..."
    metadata = "metadata.json"          # or "" for none

    [[outputs]]
    name = "small"                     # the file is small.jpg (small_0.jpg ... if the chain splits)
    ops = ["thumbnail=150x150", "flatten=white", { op = "blur", sigma = 1 }]
    format = "jpeg"                    # jpeg | png | webp | avif | tiff
    quality = 85
    chroma = "420"                     # JPEG colour subsampling: auto (libvips: 4:4:4 from quality 90) | 420 | 444
    when = "always"                    # always | slide | image (a flat, single-level file)

    [[outputs]]
    name = "pyramid"
    kind = "dzi"                       # a Deep Zoom pyramid of the full image
    when = "slide"
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyvips
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tilewright.config import Settings, get_settings
from tilewright.errors import (
    CancelledError,
    InputError,
    OutputExistsError,
    OutputWriteError,
    TilewrightError,
    vips_reason,
)
from tilewright.ops import LeadThumbnail, Source, Step, apply_chain, lead_thumbnail, parse_chain
from tilewright.ops.base import OperationError, ParamError
from tilewright.ops.encode import output_format, save
from tilewright.pipeline import ProgressFn, Runner, _never, _no_progress
from tilewright.pipeline import Step as RunStep
from tilewright.staging import STAGING_PREFIX, make_staging, remove_staging

BUILTIN_DIR = Path(__file__).parent / "builtin_recipes"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class RecipeError(InputError):
    """A recipe cannot be found or is invalid (bad TOML, unknown field, bad operation)."""


# -- the TOML schema ---------------------------------------------------------------------


class _OutputModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_FILE_NAME)
    ops: list[str | dict[str, Any]] = Field(default_factory=list)
    format: Literal["jpeg", "jpg", "png", "webp", "avif", "tiff", "tif"] | None = None
    quality: int | None = Field(None, ge=1, le=100)
    chroma: Literal["auto", "420", "444"] | None = None
    kind: Literal["image", "dzi"] = "image"
    when: Literal["always", "slide", "image"] = "always"


class _RecipeModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str = ""
    metadata: str = Field("metadata.json", pattern=r"^$|" + _FILE_NAME)
    outputs: list[_OutputModel] = Field(min_length=1)


@dataclass
class Output:
    name: str
    steps: list[Step]
    kind: str = "image"
    when: str = "always"

    def applies_to(self, is_slide: bool) -> bool:
        return self.when == "always" or (self.when == "slide") == is_slide


@dataclass
class Recipe:
    name: str
    outputs: list[Output]
    description: str = ""
    metadata: str = "metadata.json"
    source: str = "<memory>"


def parse_recipe(
    data: dict[str, Any], name: str | None = None, *, settings: Settings | None = None, source: str = "<memory>"
) -> Recipe:
    """Check a recipe (as read from TOML or JSON) and parse every chain; `RecipeError` if anything is wrong."""
    settings = settings or get_settings()
    try:
        model = _RecipeModel.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise RecipeError(f"recipe {name or model_name(data)}: {where}: {error['msg']}", path=_path(source)) from None
    recipe_name = name or model.name or "recipe"
    defaults = {"watermark": {"text": settings.watermark_text, "font": settings.watermark_font}}
    outputs, seen = [], set()
    for spec in model.outputs:
        if spec.name in seen or spec.name == model.metadata:
            raise RecipeError(f"recipe {recipe_name}: output name {spec.name!r} is used twice", path=_path(source))
        seen.add(spec.name)
        if spec.kind == "dzi":
            if spec.ops or spec.format or spec.quality or spec.chroma:
                raise RecipeError(
                    f"recipe {recipe_name}: output {spec.name!r}: a dzi output takes no ops, format, "
                    "quality or chroma (tiles use TILEWRIGHT_TILE_FORMAT and TILEWRIGHT_QUALITY)",
                    path=_path(source),
                )
            outputs.append(Output(spec.name, [], "dzi", spec.when))
            continue
        if spec.chroma and spec.format not in ("jpeg", "jpg"):
            raise RecipeError(
                f'recipe {recipe_name}: output {spec.name!r}: chroma is a JPEG setting: it needs format = "jpeg"',
                path=_path(source),
            )
        chain: list[Any] = list(spec.ops)
        if spec.format:
            chain.append({"op": "format", "format": spec.format, **({"chroma": spec.chroma} if spec.chroma else {})})
        if spec.quality:
            chain.append({"op": "quality", "quality": spec.quality})
        try:
            steps = parse_chain(chain, defaults)
        except OperationError as exc:
            raise RecipeError(f"recipe {recipe_name}: output {spec.name!r}: {exc}", path=_path(source)) from None
        outputs.append(Output(spec.name, steps, "image", spec.when))
    return Recipe(recipe_name, outputs, model.description, model.metadata, source)


def model_name(data: Any) -> str:
    return str(data.get("name", "?")) if isinstance(data, dict) else "?"


def _path(source: str) -> str | None:
    return None if source.startswith("<") else source


def recipe_dirs(settings: Settings | None = None) -> list[Path]:
    """Where recipes are looked up, first match wins: the configured folder, then the built-in ones."""
    settings = settings or get_settings()
    dirs = [Path(settings.recipe_dir)] if settings.recipe_dir else []
    return dirs + [BUILTIN_DIR]


def list_recipes(settings: Settings | None = None) -> dict[str, Path]:
    """Every recipe name known, with the file it comes from."""
    found: dict[str, Path] = {}
    for folder in recipe_dirs(settings):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found.setdefault(path.stem, path)
    return found


def load_recipe(name: str | Path | None = None, settings: Settings | None = None) -> Recipe:
    """A recipe by name (looked up in the recipe folders) or by the path of a TOML file.

    Names are plain words (letters, digits, `-`, `_`): an upload naming its recipe
    cannot reach outside the recipe folders.
    """
    settings = settings or get_settings()
    name = name or settings.default_recipe
    text = str(name)
    if isinstance(name, Path) or text.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise RecipeError("no such recipe file", path=path)
        return _read(path, path.stem, settings)
    if not _NAME.match(text):
        raise RecipeError(f"recipe names are letters, digits, - and _, not {text!r}")
    known = list_recipes(settings)
    if text not in known:
        raise RecipeError(f"unknown recipe {text!r}; known: {', '.join(known) or 'none'}")
    return _read(known[text], text, settings)


def _read(path: Path, name: str, settings: Settings) -> Recipe:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe: {exc}", path=path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"recipe is not valid TOML: {exc}", path=path) from exc
    return parse_recipe(data, name, settings=settings, source=str(path))


def chain_recipe(
    ops: list[str | dict],
    name: str,
    fmt: str | None = None,
    quality: int | None = None,
    settings: Settings | None = None,
) -> Recipe:
    """A one-output recipe from an ad-hoc chain (what `tilewright process --op ...` runs)."""
    data: dict[str, Any] = {"name": "chain", "outputs": [{"name": name, "ops": list(ops)}]}
    if fmt:
        data["outputs"][0]["format"] = fmt
    if quality:
        data["outputs"][0]["quality"] = quality
    return parse_recipe(data, "chain", settings=settings)


# -- running -----------------------------------------------------------------------------


@dataclass
class _Run:
    source_path: Path
    outdir: Path
    recipe: Recipe
    settings: Settings
    overwrite: bool
    runner: Runner
    source: Source | None = None
    staging: Path | None = None
    original_bytes: int = 0
    entries: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    lanes: list[_Lane] = field(default_factory=list)
    decoded: Path | None = None  # the decode-once copy of the source, inside the staging folder
    tracker: _Tracker | None = None


def run_recipe(
    source_path: str | Path,
    outdir: str | Path,
    recipe: Recipe | str | None = None,
    settings: Settings | None = None,
    *,
    progress: ProgressFn = _no_progress,
    cancelled: Callable[[], bool] = _never,
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
    run = _Run(Path(source_path), Path(outdir), recipe, settings, overwrite, runner)
    try:
        runner.check()
        progress(0.0, "open")
        _open(run)  # first: which outputs apply depends on whether the source is a slide
        assert run.source is not None
        todo = [o for o in recipe.outputs if o.applies_to(run.source.is_slide)]
        run.lanes = _plan_lanes(run.source, [o for o in todo if o.kind == "image"])
        steps = [RunStep("check output", _check_output, 0.0)]
        if _decode_once(run.source, run.lanes):
            steps.append(RunStep("decode", _decode, 3.0))
        if run.lanes:
            steps.append(RunStep(run.lanes[0].outputs[0].name, _make_images, sum(lane.weight for lane in run.lanes)))
        steps += [RunStep(output.name, _maker(output), _weight(output)) for output in todo if output.kind != "image"]
        if recipe.metadata:
            steps.append(RunStep("metadata", _write_metadata, 0.01))
        steps.append(RunStep("publish", _publish, 0.01))
        runner.run(steps, run)
    finally:
        _drop_decoded(run)
        if run.staging is not None and run.staging.exists():
            remove_staging(run.staging)
        if run.source is not None:
            run.source.close()
    return run.metadata


#: a thumbnail up to this many pixels is kept in memory and the recipe's smaller thumbnails are made from it
CACHE_PIXELS = 25_000_000

#: image outputs made at once, one thread each: while one lane decodes, another encodes. More than the
#: cores gains nothing (each lane is itself multi-threaded by libvips) and adds each lane's memory.
PARALLEL_OUTPUTS = max(1, min(4, os.cpu_count() or 1))

#: a source without shrink-on-load this large or larger may be decoded once (`_decode_once`);
#: a smaller one decodes in well under a second, several times over costs less than writing a copy
DECODE_ONCE_PIXELS = 16_000_000

#: ... and only while its uncompressed copy is at most this large: libvips maps a `.v` file whole, so
#: the copy's pages count in the process's resident memory (clean page cache, but RSS all the same).
#: Anything larger is streamed from the file by each lane: more decoding, flat memory.
DECODE_ONCE_MAX_BYTES = 512 * 2**20

#: name of the decode-once copy inside the staging folder (removed before publishing)
DECODED_PREFIX = ".tw-decoded-"


@dataclass
class _Lane:
    """Outputs made one after the other in one thread; `shared`: thumbnails made from the first one."""

    outputs: list[Output]
    weight: float
    shared: bool = False  # the first output's leading thumbnail is kept in memory for the others
    random: bool = False  # reads the source out of order (rotate, flip, split, ...)


def _plan_lanes(source: Source, outputs: list[Output]) -> list[_Lane]:
    """Group the image outputs into lanes, the heaviest first.

    A leading thumbnail smaller than the source (up to `CACHE_PIXELS`) joins the lane of
    its orientation, largest first: the first is read from the source (shrink-on-load)
    and kept in memory, the others are made from it. A full-size thumbnail is kept only
    when the rest of its chain needs random access; otherwise it streams, in its own lane.
    """
    from tilewright.ops import needs_random_access

    shared: dict[bool, list[tuple[int, Output]]] = {}
    lanes: list[_Lane] = []
    for output in outputs:
        lead = lead_thumbnail(output.steps)
        if lead is None:
            lanes.append(_Lane([output], _weight(output), random=needs_random_access(output.steps)))
            continue
        target = source.thumbnail_size(lead.width, lead.height, orient=lead.orient)
        random = needs_random_access(lead.rest)
        if target[0] * target[1] <= CACHE_PIXELS and (target != source.oriented_size(lead.orient) or random):
            shared.setdefault(lead.orient, []).append((target[0] * target[1], output))
            continue
        lanes.append(_Lane([output], _weight(output), random=random))
    for members in shared.values():
        members.sort(key=lambda member: -member[0])
        ordered = [output for _, output in members]
        lanes.append(_Lane(ordered, sum(_weight(o) for o in ordered), shared=True))
    lanes.sort(key=lambda lane: -lane.weight)
    return lanes


def _decode_once(source: Source, lanes: list[_Lane]) -> bool:
    """Whether to decode the source once first: a large flat image without shrink-on-load, which
    more lanes would decode than run at once, or which a chain reads out of order (libvips would
    then decode it whole for that chain, into memory or a temporary file of its own)."""
    if not lanes or source.shrinks_on_load or source.width * source.height < DECODE_ONCE_PIXELS:
        return False
    if not len(lanes) > PARALLEL_OUTPUTS and not any(lane.random for lane in lanes):
        return False
    header = source.header()
    return header is not None and _decoded_bytes(header) <= DECODE_ONCE_MAX_BYTES


_SAMPLE_BYTES = {
    "uchar": 1,
    "char": 1,
    "ushort": 2,
    "short": 2,
    "uint": 4,
    "int": 4,
    "float": 4,
    "double": 8,
    "complex": 8,
    "dpcomplex": 16,
}


def _decoded_bytes(image: pyvips.Image) -> int:
    return image.width * image.height * image.bands * _SAMPLE_BYTES.get(image.format, 8)


def _weight(output: Output) -> float:
    if output.kind == "dzi":
        return 10.0
    lead = lead_thumbnail(output.steps)
    return 1.0 if lead is not None and lead.width <= 4096 else 6.0


def _open(run: _Run) -> None:
    run.source = Source(run.source_path, run.settings)
    run.original_bytes = _size_of(run.source_path)
    if run.settings.vips_concurrency:
        pyvips.concurrency_set(run.settings.vips_concurrency)


def _check_output(run: _Run) -> None:
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


def _decode(run: _Run) -> None:
    """Decode the source once into an uncompressed file in the staging folder (a killed run's staging,
    copy included, is removed by the next run of the same output)."""
    assert run.source is not None and run.staging is not None
    run.decoded = run.staging / f"{DECODED_PREFIX}{uuid.uuid4().hex[:8]}.v"
    killed = {"watched": None}

    def watch(image: pyvips.Image) -> None:
        killed["watched"] = run.runner.watch(image)

    try:
        run.source.decode_to(run.decoded, watch=watch)
    except pyvips.Error as exc:
        if killed["watched"] is not None and killed["watched"]():
            run.runner.check()
        raise _explain(run, Path(run.source_path.name), exc, "decode the image") from exc


def _drop_decoded(run: _Run) -> None:
    if run.decoded is None:
        return
    if run.source is not None:
        run.source.release_decoded()
    run.decoded.unlink(missing_ok=True)
    run.decoded = None


def _maker(output: Output) -> Callable[[_Run], None]:
    """The step making a non-image output (a Deep Zoom pyramid); image outputs are made by `_make_images`."""
    return lambda run: _make_dzi(run, output)


class _Aborted(Exception):
    """Another lane failed: this one stops too."""


class _Tracker:
    """Progress of the lanes run side by side, and the flag that stops them all when one fails."""

    def __init__(self, run: _Run, outputs: list[Output]) -> None:
        runner = run.runner
        self.runner = runner
        self.base, self.span = runner._done, runner._span
        self.cap = min(1.0, runner._done + runner._span)  # what the runner reports next: never go past it
        self.weights = {output.name: _weight(output) for output in outputs}
        self.total = sum(self.weights.values()) or 1.0
        self.done = dict.fromkeys(self.weights, 0.0)
        self.reported = self.base
        self.lock = threading.Lock()
        self.abort = threading.Event()
        self.error: BaseException | None = None

    def check(self) -> None:
        if self.abort.is_set():
            raise _Aborted()
        self.runner.check()

    def report(self, name: str, fraction: float) -> None:
        with self.lock:
            self.done[name] = max(self.done.get(name, 0.0), min(1.0, fraction))
            share = sum(self.weights.get(n, 0.0) * f for n, f in self.done.items()) / self.total
            value = max(self.reported, min(self.cap, self.base + self.span * share))
            self.reported = value
            self.runner.stage = name
            self.runner.progress(value, name)

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.error is None and not isinstance(exc, _Aborted):
                self.error = exc
        self.abort.set()

    def watch(self, name: str, image: pyvips.Image) -> Callable[[], bool]:
        """Follow a libvips write's progress; kill it on cancel, timeout, or another lane's failure."""
        state = {"killed": False}

        def on_eval(img: pyvips.Image, progress: Any) -> None:
            try:
                self.check()
            except (CancelledError, _Aborted):
                state["killed"] = True
                img.set_kill(True)
                return
            self.report(name, min(progress.percent, 100) / 100.0)

        image.set_progress(True)
        image.signal_connect("eval", on_eval)
        return lambda: state["killed"]


def _make_images(run: _Run) -> None:
    """Every image output, lane by lane, `PARALLEL_OUTPUTS` lanes at once; the first failure stops the rest."""
    lanes = run.lanes
    tracker = run.tracker = _Tracker(run, [o for lane in lanes for o in lane.outputs])

    def lane_work(lane: _Lane) -> None:
        kept: dict[bool, pyvips.Image] = {}
        try:
            for output in lane.outputs:
                tracker.check()
                tracker.report(output.name, 0.0)
                _make_image(run, output, kept, keep=lane.shared)
                tracker.report(output.name, 1.0)
        except BaseException as exc:
            tracker.fail(exc)
            raise

    try:
        workers = min(PARALLEL_OUTPUTS, len(lanes))
        if workers <= 1:
            for lane in lanes:
                lane_work(lane)
            return
        from concurrent.futures import ThreadPoolExecutor, wait

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tw-recipe") as pool:
            futures = [pool.submit(lane_work, lane) for lane in lanes]
            try:
                wait(futures)
            except BaseException:  # Ctrl-C while waiting: stop the lanes, then let it through
                tracker.abort.set()
                raise
        if tracker.error is not None:
            raise tracker.error
    finally:
        run.tracker = None
        _drop_decoded(run)  # before publishing: the copy never reaches the output folder


def _make_image(run: _Run, output: Output, kept: dict[bool, pyvips.Image], keep: bool = True) -> None:
    assert run.source is not None and run.staging is not None
    lead = lead_thumbnail(output.steps)
    if lead is not None:
        image, rest = _thumbnail(run, lead, kept, keep), lead.rest
    else:
        image, rest = run.source.load(output.steps)
    images = apply_chain(image, rest, run.settings)
    many = len(images) > 1
    for number, result in enumerate(images):
        stem = run.staging / (f"{output.name}_{number}" if many else output.name)
        path = _save(run, result, stem, output.name)
        written = path.stat().st_size
        run.entries.append(
            {
                "name": output.name,
                "file": path.name,
                "format": output_format(result),
                "width": result.width,
                "height": result.height,
                "size": [result.width, result.height],
                "bytes": written,
                "compression_ratio": ratio(run.original_bytes, written),
            }
        )


def _thumbnail(run: _Run, lead: LeadThumbnail, kept: dict[bool, pyvips.Image], keep: bool) -> pyvips.Image:
    """The leading thumbnail of a chain: from a larger one already in memory, else from the source.

    With `keep`, the one read from the source is kept in memory (`kept`) for the next, smaller ones.
    """
    assert run.source is not None
    target = run.source.thumbnail_size(lead.width, lead.height, orient=lead.orient)
    cached = kept.get(lead.orient)
    if cached is not None and cached.width >= target[0] and cached.height >= target[1]:
        if (cached.width, cached.height) == target:
            return cached
        return cached.thumbnail_image(target[0], height=target[1], size="force")
    image = run.source.thumbnail(lead.width, lead.height, orient=lead.orient)
    if keep and target[0] * target[1] <= CACHE_PIXELS:
        try:
            image = image.copy_memory()
        except pyvips.Error as exc:
            raise _explain(run, Path(run.source_path.name), exc) from exc
        kept[lead.orient] = image
    return image


def _save(run: _Run, image: pyvips.Image, stem: Path, name: str | None = None) -> Path:
    """Encode with progress and cancellation; turn libvips failures into user-facing errors."""
    killed = {"watched": None}
    tracker = run.tracker

    def watch(prepared: pyvips.Image) -> None:
        if tracker is not None:
            killed["watched"] = tracker.watch(name or stem.name, prepared)
        else:
            killed["watched"] = run.runner.watch(prepared)

    try:
        path = save(image, stem, watch=watch)
    except ParamError as exc:
        raise InputError(f"cannot make {stem.name}: {exc}", path=run.source_path) from None
    except pyvips.Error as exc:
        if killed["watched"] is not None and killed["watched"]():
            if tracker is not None:
                tracker.check()  # another lane failed (_Aborted), or the CancelledError that says why
            run.runner.check()  # raises the CancelledError that says why
        raise _explain(run, stem, exc) from exc
    _check_read(run)
    return path


def _check_read(run: _Run) -> None:
    """A slide tile that failed to decode is reported, even when libvips carried on."""
    failure = run.source.reader.read_failure() if run.source else None
    if failure is not None:
        raise failure


def _explain(run: _Run, stem: Path, exc: pyvips.Error, action: str | None = None) -> TilewrightError:
    _check_read(run)
    reason = vips_reason(exc, lines=sys.maxsize)
    if any(s in reason.lower() for s in ("no space left", "permission denied", "read-only", "disk quota")):
        return OutputWriteError(f"cannot write output: {reason}", path=run.outdir)
    return InputError(f"cannot {action or 'make ' + stem.name}: {reason}", path=run.source_path)


def _make_dzi(run: _Run, output: Output) -> None:
    from tilewright.convert import convert, make_options

    assert run.staging is not None
    runner = run.runner
    base, span = runner._done, runner._span

    def sub_progress(fraction: float, stage: str) -> None:
        runner.progress(base + span * fraction, f"{output.name}: {stage}")

    result = convert(
        run.source_path,
        run.staging / output.name,
        "dzi",
        options=make_options("dzi", run.settings),
        settings=run.settings,
        progress=sub_progress,
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


def ratio(original: int, written: int) -> float:
    """Compression ratio against the original: original bytes / output bytes (2.0: half the size)."""
    return round(original / written, 4) if written else 0.0


def _write_metadata(run: _Run) -> None:
    assert run.source is not None and run.staging is not None
    source = run.source
    run.metadata = {
        "filename": run.source_path.name,
        "width": source.width,
        "height": source.height,
        "size": [source.width, source.height],
        "format": source.reader.format,
        "mode": image_mode(source),
        "bytes": run.original_bytes,
        "processed_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "recipe": run.recipe.name,
        "slide": source.is_slide,
        "outputs": _in_recipe_order(run),
    }
    path = run.staging / run.recipe.metadata
    path.write_text(json.dumps(run.metadata, indent=2) + "\n", encoding="utf-8")


def _in_recipe_order(run: _Run) -> list[dict[str, Any]]:
    order = {output.name: number for number, output in enumerate(run.recipe.outputs)}
    return sorted(run.entries, key=lambda entry: order.get(entry["name"], len(order)))


def image_mode(source: Source) -> str:
    """The source's pixel layout in Pillow's words: L, LA, RGB, RGBA, P, CMYK, I;16, RGB;16 ..."""
    header = source.header()
    if header is None:  # slides: the bands the reader reports
        return {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}.get(source.reader.bands, f"{source.reader.bands} bands")
    return pil_mode(header)


def pil_mode(image: pyvips.Image) -> str:
    fields = image.get_fields()
    if image.interpretation == "cmyk":
        return "CMYK"
    if "palette" in fields or "palette-bit-depth" in fields:
        try:
            if image.get("palette") if "palette" in fields else True:
                return "P" if not image.hasalpha() else "PA"
        except pyvips.Error:
            pass
    base = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}.get(image.bands, f"{image.bands} bands")
    if "bits-per-sample" in fields and image.get("bits-per-sample") == 1 and image.bands == 1:
        return "1"
    if image.format in ("ushort", "short"):
        return "I;16" if image.bands == 1 else f"{base};16"
    if image.format in ("float", "double"):
        return "F" if image.bands == 1 else f"{base};F"
    if image.format in ("uint", "int"):
        return "I" if image.bands == 1 else f"{base};32"
    return base


def _size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _publish(run: _Run) -> None:
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


__all__ = [
    "BUILTIN_DIR",
    "Output",
    "Recipe",
    "RecipeError",
    "chain_recipe",
    "list_recipes",
    "load_recipe",
    "parse_recipe",
    "pil_mode",
    "recipe_dirs",
    "run_recipe",
]
