"""Making a recipe's image outputs: its lanes (see `plan.py`) side by side, the first failure stopping the rest.

Each lane makes its outputs one after the other in one thread; a `Tracker` sums their progress
onto the runner's current step and stops every lane when one fails, is cancelled or runs out of time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import pyvips

from tilewright.errors import InputError
from tilewright.ops import LeadThumbnail, ParamError, output_format, run_chain, save
from tilewright.pipeline import Aborted, Runner
from tilewright.recipes import plan
from tilewright.recipes.context import RecipeRun, check_read, explain
from tilewright.recipes.metadata import ratio
from tilewright.recipes.schema import Output


class Tracker:
    """Progress of the lanes run side by side, and the flag that stops them all when one fails."""

    def __init__(self, runner: Runner, outputs: list[Output]) -> None:
        self.runner = runner
        self.base, self.span = runner.share()
        self.cap = min(1.0, self.base + self.span)  # what the runner reports next: never go past it
        self.weights = {output.name: plan.weight(output) for output in outputs}
        self.total = sum(self.weights.values()) or 1.0
        self.done = dict.fromkeys(self.weights, 0.0)
        self.reported = self.base
        self.lock = threading.Lock()
        self.abort = threading.Event()
        self.error: BaseException | None = None

    def check(self) -> None:
        """Raise `Aborted` when another lane failed, `CancelledError` when cancelled or out of time."""
        if self.abort.is_set():
            raise Aborted()
        self.runner.check()

    def report(self, name: str, fraction: float) -> None:
        """Output `name` is `fraction` done: report the weighted sum, never going back."""
        with self.lock:
            self.done[name] = max(self.done.get(name, 0.0), min(1.0, fraction))
            share = sum(self.weights.get(n, 0.0) * f for n, f in self.done.items()) / self.total
            value = max(self.reported, min(self.cap, self.base + self.span * share))
            self.reported = value
            self.runner.stage = name
            self.runner.progress(value, name)

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.error is None and not isinstance(exc, Aborted):
                self.error = exc
        self.abort.set()

    def watch(self, name: str, image: pyvips.Image) -> Callable[[], bool]:
        """Follow the write of output `name`; kill it on cancel, timeout, or another lane's failure."""
        return self.runner.watch(image, check=self.check, report=lambda fraction: self.report(name, fraction))


def make_images(run: RecipeRun) -> None:
    """Every image output, lane by lane, `PARALLEL_OUTPUTS` lanes at once; the first failure stops the rest."""
    lanes = run.lanes
    tracker = Tracker(run.runner, [o for lane in lanes for o in lane.outputs])

    def lane_work(lane: plan.Lane) -> None:
        kept: dict[bool, pyvips.Image] = {}
        try:
            for output in lane.outputs:
                tracker.check()
                tracker.report(output.name, 0.0)
                _make_image(run, tracker, output, kept, keep=lane.shared)
                tracker.report(output.name, 1.0)
        except BaseException as exc:
            tracker.fail(exc)
            raise

    workers = min(plan.PARALLEL_OUTPUTS, len(lanes))  # read here: tests change it
    if workers <= 1:
        for lane in lanes:
            lane_work(lane)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tw-recipe") as pool:
        futures = [pool.submit(lane_work, lane) for lane in lanes]
        try:
            wait(futures)
        except BaseException:  # Ctrl-C while waiting: stop the lanes, then let it through
            tracker.abort.set()
            raise
    if tracker.error is not None:
        raise _confirmed(run, tracker.error)


def _confirmed(run: RecipeRun, error: BaseException) -> BaseException:
    """The reason of a flat image's libvips failure met by lanes side by side, found again by one thread.

    libvips keeps one error buffer per process, which pyvips also clears when it looks up an option: with
    lanes failing at once, a lane may raise with another's line, or with none. Once they have all
    stopped, the source is decoded once more, streamed, and the reason that decode gives is the one told;
    when the source decodes, the lanes' own error stands (the output's fault)."""
    if not isinstance(error, InputError) or not isinstance(error.__cause__, pyvips.Error):
        return error
    assert run.source is not None
    if run.source.is_slide:  # a slide's failed tile reads are kept by its reader (`check_read`)
        return error
    try:
        run.source.full().avg()
    except pyvips.Error as exc:
        return explain(run, exc)
    except InputError as exc:
        return exc
    return error


def _make_image(
    run: RecipeRun, tracker: Tracker, output: Output, kept: dict[bool, pyvips.Image], keep: bool = True
) -> None:
    assert run.source is not None and run.staging is not None
    images = run_chain(run.source, output.steps, run.settings, thumbnail=lambda lead: _thumbnail(run, lead, kept, keep))
    many = len(images) > 1
    for number, result in enumerate(images):
        stem = run.staging / (f"{output.name}_{number}" if many else output.name)
        path = _save(run, tracker, result, stem, output.name)
        written = path.stat().st_size
        run.entries.append(
            {
                "name": output.name,
                "file": path.name,
                "format": output_format(result),
                "width": result.width,
                "height": result.height,
                "size": [result.width, result.height],
                "bytes": written,
                "compression_ratio": ratio(run.original_bytes, written),
            }
        )


def _thumbnail(run: RecipeRun, lead: LeadThumbnail, kept: dict[bool, pyvips.Image], keep: bool) -> pyvips.Image:
    """The leading thumbnail of a chain: from a larger one already in memory, else from the source.

    With `keep`, the one read from the source is kept in memory (`kept`) for the next, smaller ones.
    """
    assert run.source is not None
    target = run.source.thumbnail_size(lead.width, lead.height, orient=lead.orient)
    cached = kept.get(lead.orient)
    if cached is not None and cached.width >= target[0] and cached.height >= target[1]:
        if (cached.width, cached.height) == target:
            return cached
        return cached.thumbnail_image(target[0], height=target[1], size="force")
    image = run.source.thumbnail(lead.width, lead.height, orient=lead.orient)
    if keep and target[0] * target[1] <= plan.CACHE_PIXELS:
        try:
            image = image.copy_memory()
        except pyvips.Error as exc:
            raise explain(run, exc) from exc
        kept[lead.orient] = image
    return image


def _save(run: RecipeRun, tracker: Tracker, image: pyvips.Image, stem: Path, name: str) -> Path:
    """Encode with progress and cancellation; turn libvips failures into user-facing errors."""
    watched: list[Callable[[], bool]] = []

    def watch(prepared: pyvips.Image) -> None:
        watched.append(tracker.watch(name, prepared))

    try:
        path = save(image, stem, watch=watch)
    except ParamError as exc:
        raise InputError(f"cannot make {stem.name}: {exc}", path=run.source_path) from None
    except pyvips.Error as exc:
        if watched and watched[0]():
            tracker.check()  # another lane failed (Aborted), or the CancelledError that says why
        raise explain(run, exc) from exc
    check_read(run)
    return path
