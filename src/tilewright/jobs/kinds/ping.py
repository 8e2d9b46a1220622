"""`ping` (diagnostics): wait with progress, optionally fail transiently; measures the queue's own overhead
and checks the retry path end to end."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tilewright.config import Settings
from tilewright.errors import CancelledError
from tilewright.jobs.kind import Task, TaskContext, TransientError


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(0.0, ge=0, le=3600)
    fail_attempts: int = 0
    nonce: str = ""


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
