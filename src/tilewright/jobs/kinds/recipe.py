"""`recipe`: run a recipe on an uploaded image into OUTPUT_ROOT/COLLECTION/ID/ (and the output store)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tilewright.config import Settings
from tilewright.jobs.kind import Task, TaskContext
from tilewright.jobs.params import Collection, content_hash
from tilewright.jobs.publish import describe_input, output_store, output_urls, publish_to_store, store_prefix
from tilewright.paths import allowed_input
from tilewright.recipes import load_recipe, run_recipe


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str = Field(description="a path inside an input root")
    recipe: str | None = Field(None, description="a recipe name or TOML path (default: TILEWRIGHT_DEFAULT_RECIPE)")
    collection: Collection = "default"
    image_id: str | None = None


def check(params: Params, settings: Settings) -> tuple[dict[str, Any], str]:
    source = allowed_input(params.input, settings)
    recipe = params.recipe or settings.default_recipe
    load_recipe(recipe, settings)  # an unknown or broken recipe fails now
    clean = {
        **params.model_dump(exclude_unset=True),
        "input": str(source),
        "recipe": recipe,
        "collection": params.collection,
    }
    return clean, content_hash(source)


def run(ctx: TaskContext) -> dict[str, Any]:
    """Run a recipe into OUTPUT_ROOT/COLLECTION/ID/ (its one DZI output is named `slide`, served as slide.dzi),
    then, when `output_store` is set, publish that folder there too (as `convert` does)."""
    params, settings = Params.model_validate(ctx.params), ctx.settings
    location = output_store(settings)  # a bad output_store fails before any work
    share = 1.0 if location is None else 0.9
    recipe = load_recipe(params.recipe, settings)
    dzis = [o for o in recipe.outputs if o.kind == "dzi"]
    if len(dzis) == 1 and not any(o.name.startswith("slide") for o in recipe.outputs if o.kind != "dzi"):
        recipe = replace(recipe, outputs=[replace(o, name="slide") if o.kind == "dzi" else o for o in recipe.outputs])
    target_id = params.image_id or ctx.job_id
    final = settings.resolved_output_root() / params.collection / target_id
    metadata = run_recipe(
        params.input,
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
        "urls": output_urls(paths, settings),
    }
    if location is not None:
        store, base = location
        result["store"] = publish_to_store(
            ctx,
            store,
            store_prefix(base, params.collection, target_id),
            final,
            source=describe_input(Path(params.input)),
            extra={"image_id": target_id, "collection": params.collection, "kind": "recipe", "recipe": recipe.name},
            start=share,
        )
    return result


TASK = Task(Params, check, run, "run a recipe on an uploaded image", as_sent=True)
