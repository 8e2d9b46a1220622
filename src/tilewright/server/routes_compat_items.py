"""`POST /items/`: py-image-server's request, processed as that server processed it (issue 14), so that its
clients work against `tilewright serve` by changing only the host.

The dialect is that of py-image-server (github.com/vdBerg93/py-image-server: `imageprocessor.py`, whose
`ImageProcessor` runs each `METHOD=ARGUMENT` on a list of OpenCV images; `main.py`, `test_main.py`):

- `splitQuadrants=ARG` (also `split=ARG`, the README's spelling): each image becomes its four quadrants
  (top-left, top-right, bottom-left, bottom-right; the right and bottom ones get an odd side's extra pixel),
  for any ARG but `None`, `false` or `False`;
- `resize=F`: each image scaled to `int(width * F)` x `int(height * F)`, F in [0.05, 100);
- `blur=K`: `cv2.GaussianBlur(img, (K, K), cv2.BORDER_DEFAULT)`, whose third argument is sigmaX: a Gaussian
  of sigma 4 (`BORDER_DEFAULT` is 4) over a K x K kernel, K = 0 meaning the kernel OpenCV derives from
  that sigma (25); K >= 0.

A step out of those ranges is skipped and reported, the others still run. One result is written at
`output`; several at `NAME_1.EXT`, `NAME_2.EXT`, ... (from 1), in the format the suffix names. An input
that does not exist or does not decode is reported and the others processed (answered 200, as before).

Unlike the old server, outputs are written only inside `ITEMS_OUTPUT_ROOT` and inputs are read only
inside the readable roots (`paths.py`); a malformed step is a 422 before anything is read. The answer is
the request, as the old server echoed it, with `results` (per image: what was written, what was skipped)
alongside. The steps are tilewright's `split`, `resize` (exact size) and `blur` operations.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyvips
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, model_validator

from tilewright.config import Settings
from tilewright.errors import InputError, OutsideRootsError, one_line, vips_error
from tilewright.imaging.image_formats import SUFFIX_FORMATS
from tilewright.ops import OperationError, ParamError, Source, Step, apply_chain, parse_step, save
from tilewright.paths import allowed_input, readable_roots, resolve, root_of
from tilewright.server.deps import require_token, settings_of

router = APIRouter(tags=["compatibility"])

METHODS = {"splitQuadrants": "split", "split": "split", "resize": "resize", "blur": "blur"}
SCALE_RANGE = (0.05, 100.0)  # resize=F runs for 0.05 <= F < 100
#: the sigma of the old blur: cv2.BORDER_DEFAULT (4), passed where GaussianBlur takes sigmaX
OPENCV_SIGMA = 4.0
#: the kernel OpenCV derives from that sigma for 8-bit images when the size is 0: round(sigma * 6 + 1) | 1
DERIVED_KERNEL = round(OPENCV_SIGMA * 6 + 1) | 1


@dataclass(frozen=True)
class Planned:
    """One old step, read: what it does (or why it is skipped)."""

    index: int
    text: str
    kind: Literal["split", "resize", "blur", "skip"]
    scale: float = 1.0  # resize
    step: Step | None = None  # split, blur: the tilewright operation
    reason: str = ""  # skip

    def skipped(self, reason: str | None = None) -> dict[str, Any]:
        return {"index": self.index, "operation": self.text, "reason": reason or self.reason}


def plan_step(text: str, index: int) -> Planned:
    """An old `METHOD=ARGUMENT` step read as py-image-server read it (`split("=")`, fields 0 and 1);
    ValueError for what it could not run at all (it answered those 500)."""
    fields = text.split("=")
    if len(fields) < 2:
        raise ValueError(f"operation {index}: {text!r} is not METHOD=ARGUMENT (e.g. resize=0.5)")
    method, argument = fields[0], fields[1]
    kind = METHODS.get(method)
    if kind is None:
        raise ValueError(f"operation {index}: unknown method {method!r}; known: splitQuadrants, resize, blur")
    if kind == "split":
        if argument == "None" or argument.lower() == "false":
            return Planned(index, text, "skip", reason=f"split argument is {argument}: not split")
        return Planned(index, text, "split", step=parse_step("split", index))
    if kind == "resize":
        try:
            scale = float(argument)
        except ValueError:
            raise ValueError(f"operation {index}: resize takes a scaling factor, not {argument!r}") from None
        low, high = SCALE_RANGE
        if math.isnan(scale) or not low <= scale < high:
            return Planned(index, text, "skip", reason=f"scaling factor {argument} out of bounds [{low}, {high:g})")
        return Planned(index, text, "resize", scale=scale)
    try:
        kernel = int(argument)
    except ValueError:
        raise ValueError(f"operation {index}: blur takes a whole kernel size, not {argument!r}") from None
    if kernel < 0:
        return Planned(index, text, "skip", reason=f"kernel size {kernel} should be >= 0")
    if kernel and kernel % 2 == 0:  # OpenCV refuses an even kernel (the old server answered 500)
        return Planned(index, text, "skip", reason=f"kernel size {kernel} must be odd")
    try:
        step = parse_step({"op": "blur", "sigma": OPENCV_SIGMA, "size": kernel or DERIVED_KERNEL}, index)
    except OperationError as exc:  # over the blur operation's largest kernel
        return Planned(index, text, "skip", reason=exc.reason)
    return Planned(index, text, "blur", step=step)


def plan(operations: list[str] | None) -> list[Planned]:
    return [plan_step(text, index) for index, text in enumerate(operations or [])]


class ItemImage(BaseModel):
    input: str = Field(description="the image to read: a path inside the readable roots (TILEWRIGHT_INPUT_ROOTS)")
    output: str = Field(description="where to write: a path inside TILEWRIGHT_ITEMS_OUTPUT_ROOT (or relative to it)")


class ItemsRequest(BaseModel):
    """py-image-server's `Request` (other keys are ignored, as its model ignored them)."""

    images: list[ItemImage] = Field(default_factory=list, max_length=1000, description="at most 1000")
    operations: list[str] | None = Field(
        None,
        description="applied left to right: splitQuadrants=True, resize=F, blur=K",
        examples=[["splitQuadrants=True", "resize=2", "splitQuadrants=True", "resize=2"]],
    )

    @model_validator(mode="after")
    def _steps_run(self) -> ItemsRequest:
        # a ValueError: a 422 naming the step, before anything is read. With no image the old server never read
        # the steps: its README's first request, {"images": [], "operations": ["string"]}, is answered 200
        if self.images:
            plan(self.operations)
        return self


def items_root(settings: Settings) -> Path:
    """`ITEMS_OUTPUT_ROOT`, else `OUTPUT_ROOT/items`, resolved."""
    return (settings.items_output_root or settings.resolved_output_root() / "items").expanduser().resolve()


def output_path(text: str, settings: Settings) -> Path:
    """Where an output goes: inside the items root (a relative path is taken from it), with a suffix naming
    a format tilewright writes; OutsideRootsError (403) or InputError (400) otherwise, before anything is written."""
    root = items_root(settings)
    target = resolve(text.strip(), root) if text.strip() else root  # the one rule (a NUL byte is a 400)
    if root not in target.parents:
        raise OutsideRootsError(
            f"output {text!r} is outside the items output root {root} (TILEWRIGHT_ITEMS_OUTPUT_ROOT); "
            "outputs are written only inside it"
        )
    if target.suffix.lower() not in SUFFIX_FORMATS:
        raise InputError(f"output {text!r}: its suffix names no format tilewright writes ({' '.join(SUFFIX_FORMATS)})")
    return target


def input_path(text: str, settings: Settings) -> Path | str:
    """The input's resolved path, or why it cannot be read when it is inside the roots but missing (reported,
    not failing the request, as before); OutsideRootsError (403) for a path outside the readable roots."""
    try:
        return allowed_input(text, settings)
    except InputError as exc:
        if root_of(resolve(text), readable_roots(settings)) is None:
            raise
        return exc.reason


def _apply(planned: Planned, images: list[pyvips.Image], settings: Settings) -> list[pyvips.Image]:
    """One step over every image of an input; OperationError when it cannot run on them (the step is skipped)."""
    if planned.kind == "resize":
        sizes = [(int(image.width * planned.scale), int(image.height * planned.scale)) for image in images]
        if any(w < 1 or h < 1 for w, h in sizes):
            raise OperationError(f"scaling by {planned.scale:g} leaves an image under 1 pixel", index=planned.index)
        steps = [
            parse_step({"op": "resize", "width": w, "height": h, "mode": "exact"}, planned.index) for w, h in sizes
        ]
        return [apply_chain(image, [step], settings)[0] for image, step in zip(images, steps, strict=True)]
    if planned.step is None:  # not reached: split and blur carry their operation
        raise OperationError("nothing to run", index=planned.index)
    return apply_chain(images, [planned.step], settings)


def _write(images: list[pyvips.Image], target: Path, settings: Settings, source: Path) -> list[dict[str, Any]]:
    """`target` for one image, else `NAME_1.EXT`... (the old server's names), each through a temporary file."""
    stem, ext = os.path.splitext(str(target))
    names = [target] if len(images) == 1 else [Path(f"{stem}_{n}{ext}") for n in range(1, len(images) + 1)]
    fmt = SUFFIX_FORMATS[target.suffix.lower()]
    target.parent.mkdir(parents=True, exist_ok=True)
    served = settings.resolved_output_root()
    written = []
    for image, name in zip(images, names, strict=True):
        temp = name.with_name(f".tmp-{uuid.uuid4().hex}-{name.stem}")
        try:
            path = save(image, temp, fmt)
        except (pyvips.Error, ParamError) as exc:  # `save` has removed its half-written file
            if isinstance(exc, ParamError):
                raise InputError(str(exc), path=name) from None
            raise vips_error(exc, "cannot process it", source=source.name, output=name.parent) from None
        os.replace(path, name)
        entry: dict[str, Any] = {"path": str(name), "width": image.width, "height": image.height}
        entry["bytes"] = name.stat().st_size
        if served in name.parents:
            entry["url"] = f"/outputs/{name.relative_to(served)}"
        written.append(entry)
    return written


def process_item(source: Path | str, target: Path, steps: list[Planned], settings: Settings) -> dict[str, Any]:
    """One image through the steps: what was written and skipped, or the error that stopped it."""
    result: dict[str, Any] = {"written": [], "skipped": [], "error": None}
    if isinstance(source, str):
        result["error"] = source
        return result
    try:
        with Source(source, settings) as opened:
            images = [opened.full(sequential=not any(s.kind == "split" for s in steps))]
            for planned in steps:
                if planned.kind == "skip":
                    result["skipped"].append(planned.skipped())
                    continue
                try:
                    images = _apply(planned, images, settings)
                except OperationError as exc:
                    result["skipped"].append(planned.skipped(exc.reason))
            result["written"] = _write(images, target, settings, source)
    except InputError as exc:  # not decodable, over a limit: reported, the other images still processed
        result["error"] = one_line(exc, None)
    return result


def process_items(body: ItemsRequest, settings: Settings) -> list[dict[str, Any]]:
    """Every output and input checked first (a 400 writes nothing), then each image processed."""
    steps = plan(body.operations) if body.images else []  # with no image the steps are never read (see the model)
    checked = [(input_path(item.input, settings), output_path(item.output, settings)) for item in body.images]
    return [
        {"input": item.input, "output": item.output, **process_item(source, target, steps, settings)}
        for item, (source, target) in zip(body.images, checked, strict=True)
    ]


@router.post(
    "/items/",
    dependencies=[Depends(require_token)],
    responses={
        200: {"description": "the request as sent, with `results`: per image what was written and skipped"},
        400: {"description": "an output of a suffix naming no format tilewright writes; nothing is written"},
        403: {
            "description": "an output outside TILEWRIGHT_ITEMS_OUTPUT_ROOT or an input outside the readable "
            "roots; nothing is written"
        },
        401: {"description": "a write token is set and the request has not got it"},
        422: {"description": "a body that is not py-image-server's request, or a step it could not run"},
    },
)
async def items(body: ItemsRequest, request: Request) -> dict[str, Any]:
    """py-image-server's `POST /items/`: `{"images": [{"input": PATH, "output": PATH}], "operations":
    ["splitQuadrants=True", "resize=2", "blur=5"]}`, processed as that server did. See docs/migrating.md."""
    results = await run_in_threadpool(process_items, body, settings_of(request))
    return {**body.model_dump(), "results": results}
