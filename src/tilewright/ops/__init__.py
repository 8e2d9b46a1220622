"""Image operations: small pure functions on a pyvips image, and the one registry that names them.

A chain is a list of steps, each a string (`"resize=0.5"`, `"blur=sigma:2,size:7"`,
`"split"`) or a mapping (`{"op": "resize", "width": 300}`). `parse_chain` checks every
step against its operation's signature before any pixel is read; `apply_chain` runs
the steps over one or more images (`split` turns one image into four). Errors are
`OperationError`s carrying the step's `index` and `op`.

A new operation is one function (in a module here) plus one line in `OPS`.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pyvips
from pydantic import ConfigDict, ValidationError, create_model

from tilewright.config import Settings, get_settings
from tilewright.errors import InputError
from tilewright.ops import encode as _encode
from tilewright.ops import filters, geometry
from tilewright.ops import watermark as _watermark
from tilewright.ops.base import OperationError, ParamError, Step, with_encoding_of
from tilewright.ops.encode import Encoded, available_formats, encode, have_avif, save


@dataclass(frozen=True)
class Op:
    """A registered operation: the function, how to read its one-value shorthand, and its default."""

    fn: Callable[..., Any]
    short: Callable[[str], dict] | None = None  # "resize=0.5" -> {"scale": 0.5}; default: first parameter
    exclusive: tuple[str, ...] = ()  # a default is not filled in when one of these is given

    @cached_property
    def params(self) -> dict[str, inspect.Parameter]:
        return dict(list(inspect.signature(self.fn).parameters.items())[1:])

    @cached_property
    def model(self) -> type:
        hints = typing.get_type_hints(self.fn, include_extras=True)
        fields = {
            name: (hints[name], ... if p.default is inspect.Parameter.empty else p.default)
            for name, p in self.params.items()
        }
        return create_model(f"{self.fn.__name__}_params", __config__=ConfigDict(extra="forbid"), **fields)

    @property
    def doc(self) -> str:
        return " ".join((self.fn.__doc__ or "").split("\n\n")[0].split())


#: name -> operation. Keep one line per operation.
OPS: dict[str, Op] = {
    "resize": Op(geometry.resize, short=geometry.short_resize),
    "thumbnail": Op(geometry.thumbnail, short=geometry.short_thumbnail),
    "crop": Op(geometry.crop, short=geometry.short_crop),
    "split": Op(geometry.split),
    "rotate": Op(geometry.rotate),
    "flip": Op(geometry.flip, short=geometry.short_flip),
    "auto_orient": Op(geometry.auto_orient),
    "blur": Op(filters.blur),
    "flatten": Op(filters.flatten),
    "watermark": Op(_watermark.watermark, exclusive=("text", "logo")),
    "format": Op(_encode.format_),
    "quality": Op(_encode.quality),
    "strip": Op(_encode.strip),
}

#: other names accepted for an operation
ALIASES = {
    "region": "crop",
    "autorotate": "auto_orient",
    "auto-orient": "auto_orient",
    "autorot": "auto_orient",
    "convert": "format",
    "mirror": "flip",
    "quadrants": "split",
    "gaussian": "blur",
}

#: operations whose access pattern is not top-to-bottom once (sources must be opened for random access)
_RANDOM_ACCESS = {"split", "rotate", "flip", "auto_orient"}

#: a chain may not make more images than this (split chained 5 times makes 1024)
MAX_IMAGES = 1024

StepSpec = str | Mapping[str, Any] | Step


def parse_chain(
    specs: Iterable[StepSpec] | StepSpec, defaults: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Step]:
    """Check a chain of steps, before reading any pixel; raise `OperationError` at the first bad one.

    `defaults` fills in parameters a step leaves out, per operation:
    `{"watermark": {"text": "(c) me"}}` (the recipe runner passes the configured text and font).
    """
    if isinstance(specs, (str, Mapping, Step)):
        specs = [specs]
    steps = []
    for index, spec in enumerate(specs):
        steps.append(parse_step(spec, index, defaults))
    return steps


def parse_step(spec: StepSpec, index: int = 0, defaults: Mapping[str, Mapping[str, Any]] | None = None) -> Step:
    if isinstance(spec, Step):
        spec = spec.to_dict()
    name, raw = _split_spec(spec, index)
    op = OPS[name]
    given = dict(raw)
    for key, value in ((defaults or {}).get(name) or {}).items():
        if key not in given and not any(k in given for k in op.exclusive):
            given[key] = value
    try:
        checked = op.model(**given)
    except ValidationError as exc:
        raise _explain(exc, index, name, op) from None
    params = {k: v for k, v in checked.model_dump().items() if k in given}
    return Step(name, params, index)


def _split_spec(spec: Any, index: int) -> tuple[str, dict[str, Any]]:
    """(operation name, raw parameters) from a string or a mapping."""
    if isinstance(spec, Mapping):
        params = dict(spec)
        name = params.pop("op", None)
        if not isinstance(name, str) or not name:
            raise OperationError('each operation needs an "op" naming it', index=index)
        name = _resolve(name, index)
        return name, params
    if not isinstance(spec, str):
        raise OperationError(f"an operation is a string or a mapping, not {type(spec).__name__}", index=index)
    text = spec.strip()
    if not text:
        raise OperationError("empty operation", index=index)
    name, sep, value = text.partition("=")
    if not sep:
        name, sep, value = text.partition(":")  # "resize:0.5" reads as well
    name = _resolve(name.strip(), index)
    if not sep:
        return name, {}
    op = OPS[name]
    keyed = _keyed(value, op)
    if keyed is not None:
        return name, keyed
    if op.short is not None:
        try:
            return name, {k: v for k, v in op.short(value).items() if v is not None}
        except ParamError as exc:
            raise OperationError(str(exc), index=index, op=name, param=exc.param) from None
    if not op.params:
        raise OperationError(f"takes no parameters, but was given {value!r}", index=index, op=name)
    return name, {next(iter(op.params)): value}


def _keyed(value: str, op: Op) -> dict[str, str] | None:
    """'sigma:2,size:7' -> {'sigma': '2', 'size': '7'} when every key is one of the op's parameters."""
    parts = list(value.split(","))
    pairs = [p.partition(":") for p in parts]
    if not all(sep and key.strip() in op.params for key, sep, _ in pairs):
        return None
    return {key.strip(): v.strip() for key, _, v in pairs}


def _resolve(name: str, index: int) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in OPS:
        raise OperationError(f"unknown operation {name!r}; known: {', '.join(OPS)}", index=index, op=name)
    return key


def _explain(exc: ValidationError, index: int, name: str, op: Op) -> OperationError:
    error = exc.errors()[0]
    param = str(error["loc"][0]) if error.get("loc") else None
    if error["type"] == "extra_forbidden":
        takes = ", ".join(op.params) or "nothing"
        reason = f"unknown parameter {param!r}; {name} takes {takes}"
    elif error["type"] == "missing":
        reason = f"missing parameter {param!r}"
    else:
        value = error.get("input")
        reason = f"{param}: {error['msg'].rstrip('.')} (got {value!r})"
    return OperationError(reason, index=index, op=name, param=param)


def apply_chain(
    images: pyvips.Image | Iterable[pyvips.Image], steps: Iterable[Step], settings: Settings | None = None
) -> list[pyvips.Image]:
    """Run `steps` over each image, lazily; a step that returns several images (split) multiplies them.

    A step may not make an image larger than `max_image_pixels` unless its input
    already was (a huge slide may be cropped or blurred, but not enlarged).
    """
    settings = settings or get_settings()
    current = [images] if isinstance(images, pyvips.Image) else list(images)
    for position, step in enumerate(steps):
        index = step.index if step.index is not None else position
        op = OPS[step.op]
        produced: list[pyvips.Image] = []
        for image in current:
            try:
                result = op.fn(image, **step.params)
            except ParamError as exc:
                raise OperationError(str(exc), index=index, op=step.op, param=exc.param) from None
            except pyvips.Error as exc:
                reason = " ".join(str(exc).split())[:300]
                raise OperationError(f"libvips failed: {reason}", index=index, op=step.op) from None
            for out in result if isinstance(result, list) else [result]:
                _check_size(out, image, settings, index, step.op)
                produced.append(with_encoding_of(out, image))
        if len(produced) > MAX_IMAGES:
            raise OperationError(
                f"the chain would make {len(produced)} images; at most {MAX_IMAGES}",
                index=index,
                op=step.op,
                http_status=413,
            )
        current = produced
    return current


def _check_size(out: pyvips.Image, source: pyvips.Image, settings: Settings, index: int, name: str) -> None:
    pixels = out.width * out.height
    if pixels > settings.max_image_pixels and pixels > source.width * source.height:
        raise OperationError(
            f"the result would be {out.width} x {out.height} = {pixels:,} pixels, over the limit "
            f"of {settings.max_image_pixels:,} (TILEWRIGHT_MAX_IMAGE_PIXELS)",
            index=index,
            op=name,
            http_status=413,
        )


def needs_random_access(steps: Iterable[Step]) -> bool:
    return any(step.op in _RANDOM_ACCESS for step in steps)


from tilewright.ops.source import (  # noqa: E402 - needs OPS above
    LeadThumbnail,
    Source,
    lead_thumbnail,
    normalise,
    process_file,
)

__all__ = [
    "ALIASES",
    "Encoded",
    "InputError",
    "LeadThumbnail",
    "OPS",
    "Op",
    "OperationError",
    "ParamError",
    "Source",
    "Step",
    "apply_chain",
    "available_formats",
    "encode",
    "have_avif",
    "lead_thumbnail",
    "needs_random_access",
    "normalise",
    "parse_chain",
    "parse_step",
    "process_file",
    "save",
]
