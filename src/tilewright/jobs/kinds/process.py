"""`process`: an operation chain over several images, written under OUTPUT_ROOT/processed/ (issue 4).

`Params` is also the body of `POST /process`, which runs small requests inline with `process_images`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pyvips
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from tilewright.config import Settings
from tilewright.errors import CancelledError, InputError, OutsideRootsError, vips_error
from tilewright.imaging.image_formats import SUFFIX_FORMATS, FormatName
from tilewright.jobs.kind import Task, TaskContext
from tilewright.jobs.params import content_hash
from tilewright.ops import MAX_STEPS, Source, parse_chain, run_chain, save
from tilewright.paths import allowed_input, resolve
from tilewright.pipeline import ProgressFn


def _chain(operations: list[Any]) -> list[Any]:
    # an OperationError (not a ValueError) is not collected by pydantic: it leaves the validation as it is,
    # with the index and name of the bad step (POST /process answers it 422, a job submission 400)
    parse_chain(operations)
    return operations


def _none_is_empty(value: Any) -> Any:
    return [] if value is None else value  # `"operations": null` is no operation, as it always was


#: a relative name: no leading / or \, no part starting with '.' ('..' included), no NUL (the schema says it, so a
#: generated client never sends what `process_target` refuses)
RELATIVE_NAME = r"^(?![/\\])(?!(?:.*[/\\])?\.)[^\x00]+$"


class ImageItem(BaseModel):
    model_config = ConfigDict(regex_engine="python-re")  # the pattern's look-aheads

    input: str = Field(min_length=1, description="an uploaded image's id, or a path inside an input root")
    output: str = Field(
        pattern=RELATIVE_NAME,
        description="a relative name under OUTPUT_ROOT/processed/ (the extension may be left out)",
    )


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # first: a bad chain is reported before anything else, as it always was
    operations: Annotated[list[Any], BeforeValidator(_none_is_empty), AfterValidator(_chain)] = Field(
        default_factory=list,
        max_length=MAX_STEPS,
        description=f'operations applied left to right: "name=value" strings or {{"op": name, ...}} objects, '
        f"at most {MAX_STEPS}",
        examples=[["split", "resize=0.5"]],
    )
    format: FormatName | None = None
    images: list[ImageItem] = Field(
        min_length=1, max_length=1000, description='a list of {"input": ..., "output": ...}, at most 1000'
    )


def process_target(name: Any, settings: Settings) -> Path:
    """OUTPUT_ROOT/processed/NAME for a relative NAME; InputError for anything absolute, with '..' or escaping."""
    text = str(name or "").replace("\\", "/").strip()
    root = (settings.resolved_output_root() / "processed").resolve()
    parts = Path(text).parts
    if not text or Path(text).is_absolute() or ".." in parts or any(p.startswith(".") for p in parts):
        raise InputError(f"output {text!r} must be a relative name under the output root (no '..', no leading /)")
    target = resolve(text, root)
    if root not in target.parents:  # a symlink under processed/ leading out
        raise OutsideRootsError(f"output {text!r} escapes the output root")
    return target


def check(params: Params, settings: Settings) -> tuple[dict[str, Any], str]:
    images = []
    for item in params.images:
        source = allowed_input(item.input, settings)
        process_target(item.output, settings)
        images.append({"input": str(source), "output": item.output})
    clean = {"images": images, "operations": params.operations, "format": params.format}
    return clean, "".join(content_hash(Path(i["input"])) for i in images)


def process_images(
    params: dict[str, Any],
    settings: Settings,
    progress: ProgressFn = lambda f, s: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> list[dict[str, Any]]:
    """Run the chain over every input; write NAME.ext (NAME_0.ext, NAME_1.ext... when it makes several)."""
    steps = parse_chain(params.get("operations") or [])
    root = settings.resolved_output_root()
    written: list[dict[str, Any]] = []
    items = params["images"]
    for number, item in enumerate(items):
        if cancelled():
            raise CancelledError("cancelled")
        progress(number / len(items), f"processing {Path(item['input']).name}")
        target = process_target(item["output"], settings)
        default = params.get("format") or SUFFIX_FORMATS.get(target.suffix.lower(), "jpeg")
        stem = target.with_suffix("") if target.suffix.lower() in SUFFIX_FORMATS else target
        stem.parent.mkdir(parents=True, exist_ok=True)
        with Source(item["input"], settings) as source:
            images = run_chain(source, steps, settings)
            for index, out in enumerate(images):
                name = stem if len(images) == 1 else stem.with_name(f"{stem.name}_{index}")
                temp = name.with_name(f".tmp-{os.getpid()}-{name.name}")
                try:
                    path = save(out, temp, default)
                except pyvips.Error as exc:
                    raise vips_error(exc, f"cannot process {Path(item['input']).name}", output=stem.parent) from None
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


def run(ctx: TaskContext) -> dict[str, Any]:
    """Apply an operation chain to several images, writing under OUTPUT_ROOT/processed/."""
    outputs = process_images(ctx.params, ctx.settings, ctx.progress, ctx.cancelled)
    return {"outputs": outputs, "paths": [o["path"] for o in outputs], "urls": [o["url"] for o in outputs]}


TASK = Task(Params, check, run, "apply an operation chain to several images")
