"""`recipe_blob`: run a recipe on one blob *version* and upload what it makes (`TILEWRIGHT_EVENT_RECIPE`).

Stream the blob to the job's work directory (under its own name: the metadata names it), run the recipe
there, then upload: with a blob layout (`events.layout`, e.g. the `azure-functions` recipe) each output
to its own key, in parallel, the metadata last (a reader that finds it finds every output); without one,
the whole folder at the output template, manifest last (as `convert_blob` publishes a pyramid). Its key is
`events.filters.job_key(canonical URL, etag, version, recipe)`: duplicates and redeliveries are one job.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import Field

from tilewright.config import Settings
from tilewright.errors import InputError
from tilewright.events.filters import output_prefix
from tilewright.events.layout import blob_keys
from tilewright.jobs.kind import Task, TaskContext
from tilewright.jobs.kinds.blob import BlobParams, checked, download, output_target, storage_faults, superseded
from tilewright.jobs.publish import publish_to_store
from tilewright.recipes import Recipe, load_recipe, run_recipe
from tilewright.storage import Storage, key_parts, open_url
from tilewright.storage.parallel import run_parallel

KIND = "recipe_blob"


class Params(BlobParams):
    recipe: str = Field(min_length=1, description="the recipe to run (TILEWRIGHT_EVENT_RECIPE when submitted)")


def check(params: Params, settings: Settings) -> tuple[dict[str, Any], str]:
    clean = {**checked(params, settings), "recipe": params.recipe}
    load_recipe(params.recipe, settings)  # an unknown or broken recipe fails now, not in the worker
    return clean, f"{clean['etag']}\0{clean['version']}\0{params.recipe}"


def run(ctx: TaskContext) -> dict[str, Any]:
    """Download (streamed) -> the recipe -> upload at the layout (or as a folder); temp files in the work dir."""
    started = time.perf_counter()
    settings, params = ctx.settings, Params.model_validate(ctx.params)
    recipe = load_recipe(params.recipe, settings)
    with storage_faults():
        store, key = open_url(params.source, settings)
        info = store.info(key)
        if (answer := superseded(params, info)) is not None:
            return answer
        local = ctx.work_dir / "in" / (key_parts(key)["name"] or "blob")
        local.parent.mkdir()
        download(ctx, store, key, local)
        out = ctx.work_dir / "out"
        metadata = run_recipe(
            local,
            out,
            recipe,
            settings,
            progress=lambda f, stage: ctx.progress(0.2 + 0.6 * f, stage),
            cancelled=ctx.cancelled,
        )
        local.unlink(missing_ok=True)  # not needed any more: free the disk now
        target, base = output_target(settings, store)
        result: dict[str, Any] = {"source": params.source, "etag": info.etag, "recipe": recipe.name}
        if recipe.has_layout:
            result.update(_upload_layout(ctx, recipe, target, blob_keys(recipe, key, info.etag, base), out))
        else:
            result["store"] = publish_to_store(
                ctx,
                target,
                output_prefix(key, info.etag, settings, base),
                out,
                source={"url": params.source, "etag": info.etag, "version": info.version, "size": info.size},
                extra={"kind": "recipe", "recipe": recipe.name},
                start=0.8,
            )
    return {**result, "metadata": metadata, "seconds": round(time.perf_counter() - started, 3)}


def _upload_layout(ctx: TaskContext, recipe: Recipe, store: Storage, keys: dict[str, str], out: Path) -> dict[str, Any]:
    """Each file made to its key, `storage_connections` at once, the metadata after them all."""
    made = {path.stem: path for path in out.iterdir() if path.is_file()}
    files: dict[str, Path] = {}
    for output in recipe.outputs:
        several = sorted(
            stem for stem in made if stem.startswith(f"{output.name}_") and stem[len(output.name) + 1 :].isdigit()
        )
        if several:
            raise InputError(f"output {output.name} made {len(several)} files; a blob layout names one blob per output")
        if output.name in made:  # an output whose `when` does not apply to this source is not made
            files[output.name] = made[output.name]
    metadata = out / recipe.metadata if recipe.metadata else None
    total = len(files) + (metadata is not None)
    for key in keys.values():
        store.ensure_container(key)
    calls = [lambda path=path, name=name: store.upload_file(path, keys[name]) for name, path in files.items()]
    run_parallel(
        calls, store.connections, lambda done, _t: ctx.progress(0.8 + 0.2 * done / total, f"uploading {done}/{total}")
    )
    blobs = {name: store.url(keys[name]) for name in files}
    if metadata is not None:
        store.upload_file(metadata, keys[recipe.metadata])
        blobs[recipe.metadata] = store.url(keys[recipe.metadata])
    return {"blobs": blobs, "files": total, "bytes": sum(p.stat().st_size for p in out.iterdir() if p.is_file())}


TASK = Task(Params, check, run, "run a recipe on one blob version and upload its outputs at the recipe's layout")
