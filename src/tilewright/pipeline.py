"""A pipeline is a list of small named steps over one context (after imgproxy).

Between steps, and during a long libvips write through its `eval` signal, the
runner checks the time limit and whether the caller asked to cancel, and reports
progress. The same runner serves the CLI (a progress bar), and the job system
(a job record): they differ only in the `progress` and `cancelled` callables.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyvips

from tilewright.errors import CancelledError

ProgressFn = Callable[[float, str], None]


def _no_progress(fraction: float, stage: str) -> None:
    return None


def _never() -> bool:
    return False


@dataclass
class Step:
    name: str
    run: Callable[[Any], None]
    weight: float = 0.0  # share of the progress bar this step covers


@dataclass
class Runner:
    """Runs steps with a deadline, a cancel check and progress reporting."""

    time_limit: float
    progress: ProgressFn = _no_progress
    cancelled: Callable[[], bool] = _never
    started: float = field(default_factory=time.monotonic)
    stage: str = ""
    _done: float = 0.0
    _span: float = 0.0

    def over_time(self) -> bool:
        return time.monotonic() - self.started > self.time_limit

    def stopped(self) -> bool:
        """Cancelled or over the time limit: `check` would raise."""
        return self.cancelled() or self.over_time()

    def check(self) -> None:
        if self.cancelled():
            raise CancelledError("cancelled")
        if self.over_time():
            raise CancelledError(
                f"stopped after the time limit of {self.time_limit:g} s (TILEWRIGHT_TIME_LIMIT_SECONDS)"
            )

    def run(self, steps: list[Step], context: Any) -> None:
        total = sum(s.weight for s in steps) or 1.0
        for step in steps:
            self.check()
            self.stage = step.name
            self._span = step.weight / total
            self.progress(self._done, step.name)
            step.run(context)
            self._done = min(1.0, self._done + self._span)
        self.progress(1.0, "done")

    def watch(self, image: pyvips.Image) -> Callable[[], bool]:
        """Report a libvips computation's progress within the current step; kill it on cancel or timeout.

        Returns a function telling whether this runner killed the computation.
        """
        state = {"killed": False}

        def on_eval(img: pyvips.Image, progress: Any) -> None:
            try:
                self.check()
            except CancelledError:
                state["killed"] = True
                img.set_kill(True)
                return
            self.progress(self._done + self._span * min(progress.percent, 100) / 100.0, self.stage)

        image.set_progress(True)
        image.signal_connect("eval", on_eval)
        return lambda: state["killed"]
