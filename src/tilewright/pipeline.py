"""A pipeline is a list of small named steps over one context (after imgproxy).

Between steps, and during a long libvips write through its `eval` signal, the
runner checks the time limit and whether the caller asked to cancel, and reports
progress. The same runner serves the CLI (a progress bar), and the job system
(a job record): they differ only in the `progress` and `cancelled` callables.

Work inside a step reports its own progress on the step's share of the bar: `share()`
says where that is, `sub_progress()` maps a nested run's 0..1 onto it, and `watch()`
follows a libvips write (with an extra check and report for work split over threads).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyvips

from tilewright.errors import CancelledError

ProgressFn = Callable[[float, str], None]


def no_progress(fraction: float, stage: str) -> None:
    """The default `progress`: report nothing."""
    return None


def never() -> bool:
    """The default `cancelled`: never."""
    return False


class Aborted(Exception):
    """Another part of the same run (a recipe's other lane) failed: this one stops too, without a reason of its own."""


@dataclass
class Step:
    name: str
    run: Callable[[Any], None]
    weight: float = 0.0  # share of the progress bar this step covers


@dataclass
class Runner:
    """Runs steps with a deadline, a cancel check and progress reporting."""

    time_limit: float
    progress: ProgressFn = no_progress
    cancelled: Callable[[], bool] = never
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

    def share(self) -> tuple[float, float]:
        """(where the current step starts, the share of the whole it covers), both 0..1."""
        return self._done, self._span

    def sub_progress(self, prefix: str = "") -> ProgressFn:
        """A `progress` for a nested run inside the current step: its 0..1 mapped onto the step's share,
        its stage shown after `prefix`."""
        base, span = self.share()
        return lambda fraction, stage: self.progress(base + span * fraction, prefix + stage)

    def watch(
        self,
        image: pyvips.Image,
        *,
        check: Callable[[], None] | None = None,
        report: Callable[[float], None] | None = None,
    ) -> Callable[[], bool]:
        """Follow a libvips computation of `image`; kill it on cancel or timeout.

        On each `eval` signal, `check()` (default: `self.check`) is called: whatever it raises kills the
        computation, and the caller calls it again to raise why. Otherwise `report(fraction)` is called
        (default: this runner's progress within the current step). Returns a function telling whether
        the computation was killed here.
        """
        state = {"killed": False}
        stop = check or self.check
        tell = report or (lambda fraction: self.progress(self._done + self._span * fraction, self.stage))

        def on_eval(img: pyvips.Image, progress: Any) -> None:
            try:
                stop()
            except (CancelledError, Aborted):  # cancelled, over time, or another lane failed: the caller raises why
                state["killed"] = True
                img.set_kill(True)
                return
            tell(min(progress.percent, 100) / 100.0)

        image.set_progress(True)
        image.signal_connect("eval", on_eval)
        return lambda: state["killed"]
