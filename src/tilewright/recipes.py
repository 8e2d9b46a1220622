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
import shutil
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal

import pyvips
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tilewright.config import Settings, get_settings
from tilewright.errors import InputError, OutputExistsError, TilewrightError
from tilewright.ops import Source, Step, apply_chain, parse_chain
from tilewright.ops.base import OperationError, ParamError
from tilewright.ops.encode import output_format, save
from tilewright.outputs.base import STAGING_PREFIX, make_staging, remove_staging
from tilewright.pipeline import ProgressFn, Runner, _never, _no_progress
from tilewright.pipeline import Step as RunStep

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
    raw: dict[str, Any] = field(default_factory=dict)


def parse_recipe(data: dict[str, Any], name: str | None = None, *, settings: Settings | None = None,
                 source: str = "<memory>") -> Recipe:
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
            if spec.ops or spec.format or spec.quality:
                raise RecipeError(f"recipe {recipe_name}: output {spec.name!r}: a dzi output takes no ops, format "
                                  "or quality (tiles use TILEWRIGHT_TILE_FORMAT and TILEWRIGHT_QUALITY)",
                                  path=_path(source))
            outputs.append(Output(spec.name, [], "dzi", spec.when))
            continue
        chain: list[Any] = list(spec.ops)
        if spec.format:
            chain.append({"op": "format", "format": spec.format})
        if spec.quality:
            chain.append({"op": "quality", "quality": spec.quality})
        try:
            steps = parse_chain(chain, defaults)
        except OperationError as exc:
            raise RecipeError(f"recipe {recipe_name}: output {spec.name!r}: {exc}", path=_path(source)) from None
        outputs.append(Output(spec.name, steps, "image", spec.when))
    return Recipe(recipe_name, outputs, model.description, model.metadata, source, data)


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


def chain_recipe(ops: list[str | dict], name: str, fmt: str | None = None, quality: int | None = None,
                 settings: Settings | None = None) -> Recipe:
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
    staged: list[Path] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    kept: dict[bool, pyvips.Image] = field(default_factory=dict)


def run_recipe(source_path: str | Path, outdir: str | Path, recipe: Recipe | str | None = None,
               settings: Settings | None = None, *, progress: ProgressFn = _no_progress,
               cancelled: Callable[[], bool] = _never, overwrite: bool = False) -> dict[str, Any]:
    """Make every output of `recipe` for `source_path` into `outdir`; return the metadata dict.

    `progress(fraction, stage)` is called as work advances; `cancelled()` is polled
    between steps and during long writes. Nothing appears in `outdir` unless all
    outputs were made. Raises `TilewrightError`s: `InputError` for a bad source or
    recipe, `OutputExistsError` if an output exists and not `overwrite`,
    `CancelledError` when cancelled or over `time_limit_seconds`.
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
        # largest thumbnails first: the smaller ones are then made from the last one kept in memory
        todo.sort(key=lambda o: -_lead_area(o))
        steps = [RunStep("check output", _check_output, 0.0)]
        steps += [RunStep(output.name, _maker(output), _weight(output)) for output in todo]
        if recipe.metadata:
            steps.append(RunStep("metadata", _write_metadata, 0.01))
        steps.append(RunStep("publish", _publish, 0.01))
        runner.run(steps, run)
    finally:
        if run.staging is not None and run.staging.exists():
            remove_staging(run.staging)
        if run.source is not None:
            run.source.close()
    return run.metadata


#: a thumbnail up to this many pixels is kept in memory and the recipe's smaller thumbnails are made from it
CACHE_PIXELS = 25_000_000


def _lead_thumbnail(steps: list[Step]) -> tuple[int, bool]:
    """(index of a leading thumbnail step or -1, whether an auto_orient comes before it)."""
    orient = bool(steps) and steps[0].op == "auto_orient"
    lead = 1 if orient else 0
    if len(steps) > lead and steps[lead].op == "thumbnail":
        return lead, orient
    return -1, orient


def _lead_area(output: Output) -> float:
    index, _ = _lead_thumbnail(output.steps)
    if output.kind != "image":
        return -1.0
    if index < 0:
        return float("inf")
    params = output.steps[index].params
    return float(params["width"]) * float(params.get("height") or params["width"])


def _weight(output: Output) -> float:
    if output.kind == "dzi":
        return 10.0
    lead = [s for s in output.steps if s.op != "auto_orient"][:1]
    if lead and lead[0].op == "thumbnail":
        return 1.0 if lead[0].params["width"] <= 4096 else 6.0
    return 6.0


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


def _maker(output: Output) -> Callable[[_Run], None]:
    if output.kind == "dzi":
        return lambda run: _make_dzi(run, output)
    return lambda run: _make_image(run, output)


def _make_image(run: _Run, output: Output) -> None:
    assert run.source is not None and run.staging is not None
    index, orient = _lead_thumbnail(output.steps)
    if index >= 0:
        image, rest = _thumbnail(run, output.steps[index].params, orient), output.steps[index + 1:]
    else:
        image, rest = run.source.load(output.steps)
    images = apply_chain(image, rest, run.settings)
    many = len(images) > 1
    for number, result in enumerate(images):
        stem = run.staging / (f"{output.name}_{number}" if many else output.name)
        path = _save(run, result, stem)
        run.staged.append(path)
        written = path.stat().st_size
        run.entries.append({
            "name": output.name, "file": path.name, "format": output_format(result),
            "width": result.width, "height": result.height, "size": [result.width, result.height],
            "bytes": written, "compression_ratio": ratio(run.original_bytes, written),
        })


def _thumbnail(run: _Run, params: dict[str, Any], orient: bool) -> pyvips.Image:
    """The leading thumbnail of a chain: from a larger one already in memory, else from the source."""
    from tilewright.ops.geometry import fit_size

    assert run.source is not None
    width, height = params["width"], params.get("height") or params["width"]
    target = fit_size(*run.source.oriented_size(orient), width, height)
    kept = run.kept.get(orient)
    if kept is not None and kept.width >= target[0] and kept.height >= target[1]:
        if (kept.width, kept.height) == target:
            return kept
        return kept.thumbnail_image(target[0], height=target[1], size="force")
    image = run.source.thumbnail(width, height, orient=orient)
    if target[0] * target[1] <= CACHE_PIXELS:
        try:
            image = image.copy_memory()
        except pyvips.Error as exc:
            raise _explain(run, Path(run.source_path.name), exc) from exc
        run.kept[orient] = image
    return image


def _save(run: _Run, image: pyvips.Image, stem: Path) -> Path:
    """Encode with progress and cancellation; turn libvips failures into user-facing errors."""
    killed = {"watched": None}

    def watch(prepared: pyvips.Image) -> None:
        killed["watched"] = run.runner.watch(prepared)

    try:
        path = save(image, stem, watch=watch)
    except ParamError as exc:
        raise InputError(f"cannot make {stem.name}: {exc}", path=run.source_path) from None
    except pyvips.Error as exc:
        if killed["watched"] is not None and killed["watched"]():
            run.runner.check()  # raises the CancelledError that says why
        raise _explain(run, stem, exc) from exc
    _check_read(run)
    return path


def _check_read(run: _Run) -> None:
    """A slide tile that failed to decode is reported, even when libvips carried on."""
    cause = run.source.reader.read_error() if run.source else None
    if cause is not None:
        raise InputError(f"cannot read pixels: {' '.join(str(cause).split())[:300]}", path=run.source_path)


def _explain(run: _Run, stem: Path, exc: pyvips.Error) -> TilewrightError:
    _check_read(run)
    reason = " ".join(line.strip() for line in str(exc).splitlines()
                      if line.strip() and not line.startswith("unable to call"))[:300]
    if any(s in reason.lower() for s in ("no space left", "permission denied", "read-only", "disk quota")):
        from tilewright.convert import OutputWriteError

        return OutputWriteError(f"cannot write output: {reason}", path=run.outdir)
    return InputError(f"cannot make {stem.name}: {reason or 'libvips error'}", path=run.source_path)


def _make_dzi(run: _Run, output: Output) -> None:
    from tilewright.convert import convert, make_options

    assert run.staging is not None
    runner = run.runner
    base, span = runner._done, runner._span

    def sub_progress(fraction: float, stage: str) -> None:
        runner.progress(base + span * fraction, f"{output.name}: {stage}")

    def stop() -> bool:
        return runner.cancelled() or time.monotonic() - runner.started > runner.time_limit

    result = convert(run.source_path, run.staging / output.name, "dzi", options=make_options("dzi", run.settings),
                     settings=run.settings, progress=sub_progress, cancelled=stop)
    for path in result.paths:
        run.staged.append(Path(path))
    run.entries.append({
        "name": output.name, "file": f"{output.name}.dzi", "format": "dzi", "kind": "dzi",
        "width": result.width, "height": result.height, "size": [result.width, result.height],
        "levels": result.levels, "tiles": result.tiles, "bytes": result.bytes,
        "compression_ratio": ratio(run.original_bytes, result.bytes),
    })


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
        "processed_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "recipe": run.recipe.name,
        "slide": source.is_slide,
        "outputs": _in_recipe_order(run),
    }
    path = run.staging / run.recipe.metadata
    path.write_text(json.dumps(run.metadata, indent=2) + "\n", encoding="utf-8")
    run.staged.append(path)


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
    assert run.staging is not None
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
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)


__all__ = ["BUILTIN_DIR", "Output", "Recipe", "RecipeError", "chain_recipe", "list_recipes", "load_recipe",
           "parse_recipe", "pil_mode", "recipe_dirs", "run_recipe"]
