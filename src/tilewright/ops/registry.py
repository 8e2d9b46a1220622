"""The operation registry: every operation by name, and checking a chain against it.

A chain is a list of steps, each a string (`"resize=0.5"`, `"blur=sigma:2,size:7"`,
`"split"`) or a mapping (`{"op": "resize", "width": 300}`). `parse_chain` checks every
step against its operation's signature before any pixel is read; errors are
`OperationError`s carrying the step's `index` and `op`.

A new operation is one function (in a module of this package) plus one line in `OPS`.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from tilewright.ops import encode, filters, geometry, watermark
from tilewright.ops.base import OperationError, ParamError, Step


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
    def model(self) -> type[BaseModel]:
        hints = typing.get_type_hints(self.fn, include_extras=True)
        fields: dict[str, Any] = {
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
    "watermark": Op(watermark.watermark, exclusive=("text", "logo")),
    "format": Op(encode.format_),
    "quality": Op(encode.quality),
    "strip": Op(encode.strip),
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
RANDOM_ACCESS = frozenset({"split", "rotate", "flip", "auto_orient"})

StepSpec = str | Mapping[str, Any] | Step

#: the longest chain accepted. Why a bound at all: libvips builds one pipeline per chain, and about 1,500
#: chained steps overflow its stack and kill the process (1,000 still ran); real chains have a handful.
MAX_STEPS = 100


def parse_chain(
    specs: Iterable[StepSpec] | StepSpec, defaults: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Step]:
    """Check a chain of steps, before reading any pixel; raise `OperationError` at the first bad one.

    `defaults` fills in parameters a step leaves out, per operation:
    `{"watermark": {"text": "(c) me"}}` (the recipe runner passes the configured text and font).
    """
    if isinstance(specs, (str, Mapping, Step)):
        specs = [specs]
    specs = list(specs)
    if len(specs) > MAX_STEPS:  # counted before any step is looked at: a huge chain costs nothing to refuse
        raise OperationError(f"the chain has {len(specs)} steps; at most {MAX_STEPS}", index=MAX_STEPS, http_status=413)
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
        raise _invalid(exc, index, name, op) from None
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


def _invalid(exc: ValidationError, index: int, name: str, op: Op) -> OperationError:
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


def needs_random_access(steps: Iterable[Step]) -> bool:
    """Whether a chain reads its image out of order (the source must then be opened for random access)."""
    return any(step.op in RANDOM_ACCESS for step in steps)
