"""`ping` (diagnostics): wait with progress, optionally fail transiently; measures the queue's own overhead
and checks the retry path end to end."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from tilewright.config import Settings
from tilewright.errors import CancelledError
from tilewright.jobs.kind import Task, TaskContext, TransientError


def _as(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Coerce as ping always has (`float("2")`, `int(1.5)`, `str(7)`), saying what failed in its own words."""

    def coerce(value: Any) -> Any:
        try:
            return convert(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad ping parameter: {exc}") from None

    return coerce


def _seconds(value: float) -> float:
    if not 0 <= value <= 3600:
        raise ValueError("ping seconds must be between 0 and 3600")
    return value


class Params(BaseModel):
    # a diagnostics kind: keys it does not know are ignored, and values coerced loosely, as they always were
    model_config = ConfigDict(extra="ignore")

    seconds: Annotated[float, BeforeValidator(_as(float)), AfterValidator(_seconds)] = 0.0
    fail_attempts: Annotated[int, BeforeValidator(_as(int))] = 0
    nonce: Annotated[str, BeforeValidator(_as(str))] = ""


def check(params: Params, settings: Settings) -> tuple[dict[str, Any], str]:
    clean = params.model_dump()
    return clean, json.dumps(clean, sort_keys=True)


def run(ctx: TaskContext) -> dict[str, Any]:
    """Wait `seconds` with progress (cancellable); fail transiently on the first `fail_attempts` attempts."""
    params = Params.model_validate(ctx.params)
    seconds = params.seconds
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        if ctx.cancelled():
            raise CancelledError("cancelled")
        ctx.progress(elapsed / seconds, "waiting")
        time.sleep(min(0.05, seconds - elapsed))
    if ctx.attempt <= params.fail_attempts:
        raise TransientError(f"simulated storage error on attempt {ctx.attempt}")
    return {"seconds": seconds, "attempt": ctx.attempt, "pid": os.getpid()}


TASK = Task(Params, check, run, "diagnostics: wait, report progress, optionally fail transiently")
