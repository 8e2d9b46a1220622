"""The registry of job kinds: a new kind is one function and one line in `TASKS`.

A task function gets a `TaskContext` (its parameters, settings, a private work
directory, `progress` and `cancelled`) and returns the job's outputs as a dict. It
raises `TilewrightError`s for bad input (the job fails once, with that reason) and
`TransientError` (or `OSError`) for things worth retrying. The optional `prepare`
step runs at submission, in the server: it checks and normalises the parameters
and names what the default idempotency key hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tilewright.config import Settings
from tilewright.errors import InputError, TilewrightError
from tilewright.events import tasks as blob_tasks  # the convert_blob kind (issue 5)
from tilewright.paths import allowed_input
from tilewright.pipeline import ProgressFn
from tilewright.staging import publish_dir
from tilewright.storage.manifest import file_sha256

COLLECTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
KINDS = ("dzi", "tiff", "iiif")


class TransientError(TilewrightError):
    """A failure worth retrying later (storage unavailable, disk momentarily full)."""

    http_status = 503
    exit_code = 1


@dataclass
class TaskContext:
    job_id: str
    params: dict[str, Any]
    settings: Settings
    work_dir: Path
    attempt: int = 1
    progress: ProgressFn = lambda fraction, stage: None
    cancelled: Callable[[], bool] = lambda: False


@dataclass(frozen=True)
class Task:
    run: Callable[[TaskContext], dict[str, Any]]
    prepare: Callable[[dict[str, Any], Settings], tuple[dict[str, Any], str]] | None = None
    description: str = ""


# -- helpers -------------------------------------------------------------------------------
def check_collection(name: str) -> str:
    if not COLLECTION_RE.match(name or ""):
        raise InputError(f"invalid collection name {name!r}: use letters, digits, '.', '_' or '-' (max 100)")
    return name


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


def _relative_outputs(paths: list[str], settings: Settings) -> list[str]:
    root = settings.resolved_output_root()
    return [str(Path(p).relative_to(root)) for p in paths]


# -- convert -------------------------------------------------------------------------------
_CONVERT_OPTIONS = ("tile_size", "overlap", "tile_format", "quality", "base_only", "iiif_id")


def prepare_convert(params: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], str]:
    unknown = set(params) - {"input", "kind", "collection", "image_id", *_CONVERT_OPTIONS}
    if unknown:
        raise InputError(f"unknown convert parameters: {', '.join(sorted(unknown))}")
    if "input" not in params:
        raise InputError("convert needs an 'input' parameter (a path inside an input root)")
    kind = params.get("kind", "dzi")
    if kind not in KINDS:
        raise InputError(f"unknown output kind {kind!r}; choose one of {', '.join(KINDS)}")
    source = allowed_input(params["input"], settings)
    clean = {
        **params,
        "input": str(source),
        "kind": kind,
        "collection": check_collection(params.get("collection", "default")),
    }
    from tilewright.convert import make_options

    _options(clean, settings, make_options)  # bad option values fail now, not in the worker
    return clean, content_hash(source)


def _options(params: dict[str, Any], settings: Settings, make_options):
    values = {k: params[k] for k in _CONVERT_OPTIONS if params.get(k) is not None}
    try:
        for name in ("tile_size", "overlap", "quality"):
            if name in values:
                values[name] = int(values[name])
        if "base_only" in values:
            values["base_only"] = str(values["base_only"]).lower() in ("1", "true", "yes")
    except ValueError as exc:
        raise InputError(f"bad convert option: {exc}") from None
    for name, low, high in (("tile_size", 16, 8192), ("overlap", 0, 64), ("quality", 1, 100)):
        if name in values and not low <= values[name] <= high:
            raise InputError(f"convert option {name} must be between {low} and {high}, not {values[name]}")
    if values.get("tile_format") not in (None, "jpeg", "png", "webp"):
        raise InputError(f"unknown tile_format {values['tile_format']!r}")
    return make_options(params["kind"], settings, **values)


def output_store(settings: Settings):
    """(store, base key) of `output_store` for convert, recipe and import jobs, or None: not set, or it names no
    container or bucket (`az://`, `s3://`: for blob jobs that means the source blob's own store, which an upload
    lacks)."""
    if not settings.output_store:
        return None
    from tilewright.storage import open_url

    store, base = open_url(settings.output_store, settings)
    if not base and store.scheme in ("az", "s3"):
        return None
    return store, base


def store_prefix(base: str, collection: str, image_id: str) -> str:
    """Where a convert job publishes in the output store: OUTPUT_STORE/COLLECTION/IMAGE_ID/ (the server looks there)."""
    from tilewright.storage import join_key

    return join_key(base, collection, image_id)


def describe_input(path: Path) -> dict[str, Any]:
    """A manifest's `source`: a file's name and size; a folder's (an import) name, total size and file count."""
    if path.is_file():
        return {"name": path.name, "size": path.stat().st_size}
    sizes = [item.stat().st_size for item in path.rglob("*") if item.is_file()]
    return {"name": path.name, "size": sum(sizes), "files": len(sizes)}


def publish_to_store(
    ctx: TaskContext,
    location: tuple,
    folder: Path,
    params: dict[str, Any],
    target_id: str,
    extra: dict[str, Any],
    start: float,
) -> dict[str, Any]:
    """Publish `folder` at OUTPUT_STORE/COLLECTION/ID/ (manifest last), the bar going from `start` to 1;
    -> the job result's `store` entry. A storage failure is transient: the job is retried."""
    from tilewright.storage import MANIFEST, StorageError, join_key

    store, prefix = location[0], store_prefix(location[1], params["collection"], target_id)
    try:
        manifest = store.publish_pyramid(
            folder,
            prefix,
            source=describe_input(Path(params["input"])),
            extra={"job_id": ctx.job_id, "image_id": target_id, "collection": params["collection"], **extra},
            progress=lambda done, total: ctx.progress(
                start + (1 - start) * done / max(total, 1), f"uploading {done}/{total}"
            ),
            cancelled=ctx.cancelled,
        )
    except StorageError as exc:
        raise TransientError(exc.reason) from exc
    entry = {
        "output": store.url(prefix),
        "manifest": store.url(join_key(prefix, MANIFEST)),
        "files": manifest["file_count"],
        "bytes": manifest["bytes"],
    }
    if any(f["path"] == "slide.dzi" for f in manifest["files"]):
        entry["dzi"] = store.url(join_key(prefix, "slide.dzi"))
    return entry


def run_convert(ctx: TaskContext) -> dict[str, Any]:
    """Convert into the work directory; publish to the object store when `output_store` is set (manifest
    last), then at OUTPUT_ROOT/COLLECTION/ID/ (the local copy stays: `/outputs/` and the tile server read it)."""
    from tilewright.convert import convert, make_options

    params, settings = ctx.params, ctx.settings
    target_id = params.get("image_id") or ctx.job_id
    final = settings.resolved_output_root() / params["collection"] / target_id
    location = output_store(settings)  # a bad output_store fails before converting, not after
    if params["kind"] == "iiif" and not params.get("iiif_id"):
        params = {
            **params,
            "iiif_id": f"http://{settings.host}:{settings.port}/outputs/{params['collection']}/{target_id}/slide",
        }
    options = _options(params, settings, make_options)
    staged = ctx.work_dir / "out"
    staged.mkdir(parents=True)
    share = 1.0 if location is None else 0.8  # the rest of the bar is the upload
    result = convert(
        params["input"],
        staged / "slide",
        params["kind"],
        options=options,
        settings=settings,
        progress=lambda fraction, stage: ctx.progress(share * fraction, stage),
        cancelled=ctx.cancelled,
    )
    outputs = result.to_dict()
    if location is not None:
        outputs["store"] = publish_to_store(
            ctx,
            location,
            staged,
            params,
            target_id,
            extra={
                "kind": params["kind"],
                "width": result.width,
                "height": result.height,
                "levels": result.levels,
                "tiles": result.tiles,
            },
            start=share,
        )
    publish_dir(staged, final)
    paths = [str(final / Path(p).relative_to(staged)) for p in result.paths]
    outputs.update(
        output=str(final / Path(result.output).relative_to(staged)),
        paths=paths,
        urls=["/outputs/" + p for p in _relative_outputs(paths, settings)],
    )
    return outputs


# -- import --------------------------------------------------------------------------------
def prepare_import(params: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], str]:
    unknown = set(params) - {"input", "kind", "collection"}
    if unknown:
        raise InputError(f"unknown import parameters: {', '.join(sorted(unknown))}")
    if "input" not in params:
        raise InputError("import needs an 'input' parameter (a folder inside an input root)")
    source = allowed_input(params["input"], settings)
    if not source.is_dir():
        raise InputError(f"import input {params['input']!r} is not a folder")
    kind = params.get("kind", "dzi")
    if kind not in KINDS:
        raise InputError(f"unknown output kind {kind!r}; choose one of {', '.join(KINDS)}")
    clean = {"input": str(source), "kind": kind, "collection": check_collection(params.get("collection", "imports"))}
    return clean, content_hash(source)


def run_import(ctx: TaskContext) -> dict[str, Any]:
    """Convert every supported file of a folder, one after the other; one bad file does not fail the job.
    The whole output folder is published as `convert` publishes one image: to the object store when
    `output_store` is set (OUTPUT_STORE/COLLECTION/JOB_ID/, manifest last), then at OUTPUT_ROOT/COLLECTION/JOB_ID/."""
    from tilewright.convert import convert, make_options
    from tilewright.importer import plan_import

    params, settings = ctx.params, ctx.settings
    location = output_store(settings)  # a bad output_store fails before converting, not after
    share = 1.0 if location is None else 0.8  # the rest of the bar is the upload
    options = make_options(params["kind"], settings)
    staged = ctx.work_dir / "out"
    staged.mkdir(parents=True)
    todo, _skipped = plan_import(Path(params["input"]), staged, params["kind"], options)
    final = settings.resolved_output_root() / params["collection"] / ctx.job_id
    converted: list[str] = []
    failed: list[dict[str, str]] = []
    for index, (source, output) in enumerate(todo):

        def progress(fraction: float, stage: str, index: int = index, name: str = source.name) -> None:
            ctx.progress(share * (index + fraction) / max(1, len(todo)), f"{name}: {stage}")

        try:
            result = convert(
                source,
                output,
                params["kind"],
                options=options,
                settings=settings,
                progress=progress,
                cancelled=ctx.cancelled,
            )
        except InputError as exc:
            failed.append({"source": str(source), "error": str(exc)})
            continue
        converted.append(str(final / Path(result.output).relative_to(staged)))
    outputs: dict[str, Any] = {
        "output": str(final),
        "converted": converted,
        "failed": failed,
        "urls": ["/outputs/" + p for p in _relative_outputs(converted, settings)],
    }
    if location is not None:
        outputs["store"] = publish_to_store(
            ctx,
            location,
            staged,
            params,
            ctx.job_id,
            extra={
                "kind": params["kind"],
                "converted": [Path(p).relative_to(final).as_posix() for p in converted],
                "failed": len(failed),
            },
            start=share,
        )
    publish_dir(staged, final)
    return outputs


# -- process (an operation chain over several images; issue 4) -----------------------------------
_IMAGE_EXTS = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".png": "png",
    ".webp": "webp",
    ".avif": "avif",
    ".tif": "tiff",
    ".tiff": "tiff",
}


def process_target(name: Any, settings: Settings) -> Path:
    """OUTPUT_ROOT/processed/NAME for a relative NAME; InputError for anything absolute, with '..' or escaping."""
    text = str(name or "").replace("\\", "/").strip()
    root = (settings.resolved_output_root() / "processed").resolve()
    parts = Path(text).parts
    if not text or Path(text).is_absolute() or ".." in parts or any(p.startswith(".") for p in parts):
        raise InputError(f"output {text!r} must be a relative name under the output root (no '..', no leading /)")
    target = (root / text).resolve()
    if root not in target.parents:
        raise InputError(f"output {text!r} escapes the output root")
    return target


def prepare_process(params: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], str]:
    from tilewright.ops import parse_chain

    unknown = set(params) - {"images", "operations", "format"}
    if unknown:
        raise InputError(f"unknown process parameters: {', '.join(sorted(unknown))}")
    items = params.get("images")
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise InputError('process needs \'images\': a list of {"input": ..., "output": ...}')
    clean_items = []
    for item in items:
        source = allowed_input(str(item.get("input", "")), settings)
        process_target(item.get("output"), settings)
        clean_items.append({"input": str(source), "output": str(item["output"])})
    operations = params.get("operations") or []
    if not isinstance(operations, list):
        raise InputError("'operations' must be a list")
    parse_chain(operations)
    fmt = params.get("format")
    if fmt is not None and fmt not in _IMAGE_EXTS.values() and fmt not in ("jpg", "tif"):
        raise InputError(f"unknown format {fmt!r}; choose jpeg, png, webp, avif or tiff")
    clean = {"images": clean_items, "operations": operations, "format": fmt}
    return clean, "".join(content_hash(Path(i["input"])) for i in clean_items)


def process_images(
    params: dict[str, Any],
    settings: Settings,
    progress: ProgressFn = lambda f, s: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> list[dict[str, Any]]:
    """Run the chain over every input; write NAME.ext (NAME_0.ext, NAME_1.ext... when it makes several)."""
    import pyvips

    from tilewright.errors import CancelledError
    from tilewright.ops import Source, apply_chain, parse_chain, save

    steps = parse_chain(params.get("operations") or [])
    root = settings.resolved_output_root()
    written: list[dict[str, Any]] = []
    items = params["images"]
    for number, item in enumerate(items):
        if cancelled():
            raise CancelledError("cancelled")
        progress(number / len(items), f"processing {Path(item['input']).name}")
        target = process_target(item["output"], settings)
        default = params.get("format") or _IMAGE_EXTS.get(target.suffix.lower(), "jpeg")
        stem = target.with_suffix("") if target.suffix.lower() in _IMAGE_EXTS else target
        stem.parent.mkdir(parents=True, exist_ok=True)
        with Source(item["input"], settings) as source:
            image, rest = source.load(steps)
            images = apply_chain(image, rest, settings)
            for index, out in enumerate(images):
                name = stem if len(images) == 1 else stem.with_name(f"{stem.name}_{index}")
                temp = name.with_name(f".tmp-{os.getpid()}-{name.name}")
                try:
                    path = save(out, temp, default)
                except pyvips.Error as exc:
                    raise InputError(
                        f"cannot process {Path(item['input']).name}: {' '.join(str(exc).split())[:300]}"
                    ) from None
                final = Path(f"{name}{path.suffix}")
                os.replace(path, final)
                written.append(
                    {
                        "input": item["input"],
                        "path": str(final.relative_to(root)),
                        "url": f"/outputs/{final.relative_to(root)}",
                        "width": out.width,
                        "height": out.height,
                        "bytes": final.stat().st_size,
                    }
                )
    progress(1.0, "done")
    return written


def run_process(ctx: TaskContext) -> dict[str, Any]:
    """Apply an operation chain to several images, writing under OUTPUT_ROOT/processed/."""
    outputs = process_images(ctx.params, ctx.settings, ctx.progress, ctx.cancelled)
    return {"outputs": outputs, "paths": [o["path"] for o in outputs], "urls": [o["url"] for o in outputs]}


# -- recipe (an upload run through a recipe; issue 4) ----------------------------------------------
def prepare_recipe(params: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], str]:
    from tilewright.recipes import load_recipe

    unknown = set(params) - {"input", "recipe", "collection", "image_id"}
    if unknown:
        raise InputError(f"unknown recipe parameters: {', '.join(sorted(unknown))}")
    source = allowed_input(params.get("input", ""), settings)
    recipe = str(params.get("recipe") or settings.default_recipe)
    load_recipe(recipe, settings)  # an unknown or broken recipe fails now
    clean = {
        **params,
        "input": str(source),
        "recipe": recipe,
        "collection": check_collection(params.get("collection", "default")),
    }
    return clean, content_hash(source)


def run_recipe_job(ctx: TaskContext) -> dict[str, Any]:
    """Run a recipe into OUTPUT_ROOT/COLLECTION/ID/ (its one DZI output is named `slide`, served as slide.dzi),
    then, when `output_store` is set, publish that folder there too (as `convert` does)."""
    from dataclasses import replace

    from tilewright.recipes import load_recipe, run_recipe

    params, settings = ctx.params, ctx.settings
    location = output_store(settings)  # a bad output_store fails before any work
    share = 1.0 if location is None else 0.9
    recipe = load_recipe(params["recipe"], settings)
    dzis = [o for o in recipe.outputs if o.kind == "dzi"]
    if len(dzis) == 1 and not any(o.name.startswith("slide") for o in recipe.outputs if o.kind != "dzi"):
        recipe = replace(recipe, outputs=[replace(o, name="slide") if o.kind == "dzi" else o for o in recipe.outputs])
    target_id = params.get("image_id") or ctx.job_id
    final = settings.resolved_output_root() / params["collection"] / target_id
    metadata = run_recipe(
        params["input"],
        final,
        recipe,
        settings,
        progress=lambda fraction, stage: ctx.progress(share * fraction, stage),
        cancelled=ctx.cancelled,
        overwrite=True,
    )
    paths = sorted(str(p) for p in final.iterdir() if p.is_file()) if final.is_dir() else []
    result = {
        "output": str(final),
        "recipe": recipe.name,
        "paths": paths,
        "metadata": metadata,
        "urls": ["/outputs/" + p for p in _relative_outputs(paths, settings)],
    }
    if location is not None:
        result["store"] = publish_to_store(
            ctx, location, final, params, target_id, extra={"kind": "recipe", "recipe": recipe.name}, start=share
        )
    return result


# -- ping (diagnostics) ----------------------------------------------------------------------
def prepare_ping(params: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], str]:
    try:
        clean = {
            "seconds": float(params.get("seconds", 0)),
            "fail_attempts": int(params.get("fail_attempts", 0)),
            "nonce": str(params.get("nonce", "")),
        }
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad ping parameter: {exc}") from None
    if not 0 <= clean["seconds"] <= 3600:
        raise InputError("ping seconds must be between 0 and 3600")
    return clean, json.dumps(clean, sort_keys=True)


def run_ping(ctx: TaskContext) -> dict[str, Any]:
    """Wait `seconds` with progress (cancellable); fail transiently on the first `fail_attempts` attempts.

    Measures the queue's own overhead and checks the retry path end to end.
    """
    from tilewright.errors import CancelledError

    seconds = ctx.params["seconds"]
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        if ctx.cancelled():
            raise CancelledError("cancelled")
        ctx.progress(elapsed / seconds, "waiting")
        time.sleep(min(0.05, seconds - elapsed))
    if ctx.attempt <= ctx.params["fail_attempts"]:
        raise TransientError(f"simulated storage error on attempt {ctx.attempt}")
    return {"seconds": seconds, "attempt": ctx.attempt, "pid": os.getpid()}


TASKS: dict[str, Task] = {
    "convert": Task(run_convert, prepare_convert, "convert one image or slide to dzi/tiff/iiif"),
    "import": Task(run_import, prepare_import, "convert every supported file of a folder"),
    "ping": Task(run_ping, prepare_ping, "diagnostics: wait, report progress, optionally fail transiently"),
    "process": Task(run_process, prepare_process, "apply an operation chain to several images"),
    "recipe": Task(run_recipe_job, prepare_recipe, "run a recipe on an uploaded image"),
    "convert_blob": Task(
        blob_tasks.run_convert_blob,
        blob_tasks.prepare_convert_blob,
        "convert one blob version to DZI in object storage",
    ),
}


def prepare(kind: str, params: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], str]:
    """Checked parameters and the default idempotency key (kind + parameters + input content)."""
    task = TASKS.get(kind)
    if task is None:
        raise InputError(f"unknown job kind {kind!r}; choose one of {', '.join(TASKS)}")
    if not isinstance(params, dict):
        raise InputError("job parameters must be a JSON object")
    clean, material = task.prepare(params, settings) if task.prepare else (params, "")
    digest = hashlib.sha256(f"{kind}\0{json.dumps(clean, sort_keys=True, default=str)}\0{material}".encode())
    return clean, digest.hexdigest()
