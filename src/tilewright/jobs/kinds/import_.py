"""`import`: convert every supported file of a folder into one output folder (named `import_`: `import` is
a keyword)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tilewright.config import Settings
from tilewright.convert import convert, make_options
from tilewright.errors import InputError
from tilewright.importer import plan_import
from tilewright.jobs.kind import Task, TaskContext
from tilewright.jobs.params import Collection, OutputKind, content_hash
from tilewright.jobs.publish import describe_input, output_store, output_urls, publish_to_store, store_prefix
from tilewright.outputs.iiif import served_id
from tilewright.paths import allowed_input
from tilewright.staging import publish_dir


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str = Field(description="a folder inside an input root")
    kind: OutputKind = "dzi"
    collection: Collection = "imports"


def check(params: Params, settings: Settings) -> tuple[dict[str, Any], str]:
    source = allowed_input(params.input, settings)
    if not source.is_dir():
        raise InputError(f"import input {params.input!r} is not a folder")
    return {**params.model_dump(), "input": str(source)}, content_hash(source)


def run(ctx: TaskContext) -> dict[str, Any]:
    """Convert every supported file of a folder, one after the other; one bad file does not fail the job.
    The whole output folder is published as `convert` publishes one image: to the object store when
    `output_store` is set (OUTPUT_STORE/COLLECTION/JOB_ID/, manifest last), then at OUTPUT_ROOT/COLLECTION/JOB_ID/."""
    params, settings = Params.model_validate(ctx.params), ctx.settings
    location = output_store(settings)  # a bad output_store fails before converting, not after
    share = 1.0 if location is None else 0.8  # the rest of the bar is the upload
    options = make_options(params.kind, settings)
    staged = ctx.work_dir / "out"
    staged.mkdir(parents=True)
    todo, _skipped = plan_import(Path(params.input), staged, params.kind, options)
    final = settings.resolved_output_root() / params.collection / ctx.job_id
    converted: list[str] = []
    failed: list[dict[str, str]] = []
    for index, (source, output) in enumerate(todo):

        def progress(fraction: float, stage: str, index: int = index, name: str = source.name) -> None:
            ctx.progress(share * (index + fraction) / max(1, len(todo)), f"{name}: {stage}")

        if params.kind == "iiif":  # each image's id: its URL once published at `final`
            options = replace(options, iiif_id=served_id(final / output.relative_to(staged), settings))
        try:
            result = convert(
                source,
                output,
                params.kind,
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
        "urls": output_urls(converted, settings),
    }
    if location is not None:
        store, base = location
        outputs["store"] = publish_to_store(
            ctx,
            store,
            store_prefix(base, params.collection, ctx.job_id),
            staged,
            source=describe_input(Path(params.input)),
            extra={
                "image_id": ctx.job_id,
                "collection": params.collection,
                "kind": params.kind,
                "converted": [Path(p).relative_to(final).as_posix() for p in converted],
                "failed": len(failed),
            },
            start=share,
        )
    publish_dir(staged, final)
    return outputs


TASK = Task(Params, check, run, "convert every supported file of a folder")
