"""Run one job by id: the single code path both executors call (embedded pool process or Celery worker).

claim (conditional UPDATE) -> run the task in a private work directory while a
reporter thread writes progress + heartbeat every half second and watches for a
cancel request -> finish (only if still the owner) -> remove the work directory.
Failures are sorted: bad input fails once with its reason; transient ones (storage)
are requeued with exponential backoff; a cancel ends as `cancelled`.

The final write (finish or requeue) is retried with backoff while the database is
unavailable, for as long as the job's lease lasts; a run that cannot record its end even
then leaves the job `running` with a lease that runs out, and `store.requeue_dead` (any
process) takes it over: a job never stays `running` because of a database outage.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tilewright.config import Settings
from tilewright.db import DatabaseUnavailableError
from tilewright.errors import CancelledError, TilewrightError, one_line
from tilewright.jobs import store
from tilewright.jobs.kind import TaskContext, TransientError
from tilewright.jobs.lease import worker_id
from tilewright.jobs.models import utcnow
from tilewright.jobs.registry import TASKS
from tilewright.logs import job_logging

log = logging.getLogger(__name__)
REPORT_INTERVAL = 0.5
FINAL_WRITE_FIRST_DELAY, FINAL_WRITE_MAX_DELAY = 0.2, 5.0


@dataclass
class Outcome:
    """What the executor should do next: nothing, or call again after `retry_in` seconds."""

    status: str  # succeeded | failed | cancelled | retry | busy | skipped
    retry_in: float = 0.0


class _Reporter(threading.Thread):
    """Writes the latest progress and a heartbeat; turns a cancel request (or lost ownership) into a flag."""

    def __init__(self, settings: Settings, job_id: str, me: str) -> None:
        super().__init__(daemon=True, name=f"report-{job_id[:8]}")
        self.settings, self.job_id, self.me = settings, job_id, me
        self.fraction, self.stage = 0.0, "starting"
        self.cancel = threading.Event()
        self.lost = False
        self.failing = False
        self._halt = threading.Event()

    def update(self, fraction: float, stage: str) -> None:
        self.fraction, self.stage = max(0.0, min(1.0, fraction)), stage

    def run(self) -> None:
        while not self._halt.wait(REPORT_INTERVAL):
            self.flush()

    def flush(self) -> None:
        try:
            owned, cancel = store.report(self.settings, self.job_id, self.me, self.fraction, self.stage)
        except Exception as exc:  # noqa: BLE001 - a busy database must not kill the job; try again next tick
            if not self.failing:  # once per outage, not twice a second
                log.warning("job %s: cannot report progress: %s", self.job_id, exc)
            self.failing = True
            return
        self.failing = False
        if not owned:
            self.lost = True
        if cancel or not owned:
            self.cancel.set()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def _backoff(settings: Settings, attempt: int) -> float:
    return settings.job_retry_backoff_seconds * 2 ** max(0, attempt - 1)


def _final_write(settings: Settings, job_id: str, write: Callable[[], bool]) -> bool:
    """Record a run's end, retrying with backoff while the database is unavailable, until the lease of the last
    heartbeat has surely run out (from then on another process may take the job over, and will: giving up
    earlier would only make it wait). -> whether it was recorded as ours."""
    deadline = time.monotonic() + settings.job_stale_seconds
    delay = FINAL_WRITE_FIRST_DELAY
    while True:
        try:
            return write()
        except DatabaseUnavailableError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                log.error(
                    "job %s: cannot record its end (%s); it will be taken over once the database answers", job_id, exc
                )
                return False
            log.warning("job %s: cannot record its end yet (%s); again in %.1f s", job_id, exc, min(delay, left))
            time.sleep(min(delay, left))
            delay = min(delay * 2, FINAL_WRITE_MAX_DELAY)


def _finish(
    settings: Settings,
    job_id: str,
    me: str,
    state: str,
    *,
    outputs: dict | None = None,
    error: str | None = None,
    error_type: str | None = None,
) -> bool:
    def write() -> bool:
        return store.finish(settings, job_id, me, state, outputs=outputs, error=error, error_type=error_type)

    return _final_write(settings, job_id, write)


def _requeue_later(settings: Settings, job_id: str, me: str, delay: float, error: str) -> bool:
    return _final_write(settings, job_id, lambda: store.requeue_later(settings, job_id, me, delay, error))


def execute(job_id: str, settings: Settings) -> Outcome:
    """Run job `job_id` if it is ours to run; never raises for a job's own failure. Every line logged meanwhile
    (libvips' from its own threads included) carries the job id (`logs.job_logging`)."""
    with job_logging(job_id):
        return _execute(job_id, settings)


def _execute(job_id: str, settings: Settings) -> Outcome:
    me = worker_id()
    job = store.claim(settings, job_id, me)
    if job is None:
        return _not_claimed(job_id, settings)
    task = TASKS.get(job["kind"])
    work_dir = settings.work_root() / f"{job_id}.{job['attempts']}"
    for stale in settings.work_root().glob(f"{job_id}.*"):  # left by an earlier owner that died: ours now
        shutil.rmtree(stale, ignore_errors=True)
    reporter = _Reporter(settings, job_id, me)
    if task is None:
        _finish(settings, job_id, me, "failed", error=f"unknown job kind {job['kind']!r}", error_type="InputError")
        return Outcome("failed")
    reporter.start()
    ctx = TaskContext(
        job_id=job_id,
        params=job["params"],
        settings=settings,
        work_dir=work_dir,
        attempt=job["attempts"],
        progress=reporter.update,
        cancelled=reporter.cancel.is_set,
    )
    log.info("job %s (%s) attempt %d started by %s", job_id, job["kind"], job["attempts"], me)
    try:
        work_dir.mkdir(parents=True, exist_ok=False)
        outputs = task.run(ctx)
    except CancelledError as exc:
        reporter.stop()
        if reporter.lost:
            return Outcome("skipped")
        state = "cancelled" if reporter.cancel.is_set() else "failed"
        _finish(settings, job_id, me, state, error=exc.reason, error_type=type(exc).__name__)
        return Outcome(state)
    except (TransientError, OSError) as exc:
        reporter.stop()
        reason = one_line(exc, 500)
        if job["attempts"] < job["max_attempts"]:
            delay = _backoff(settings, job["attempts"])
            log.warning("job %s: transient failure (%s); retrying in %g s", job_id, reason, delay)
            _requeue_later(settings, job_id, me, delay, reason)
            return Outcome("retry", delay)
        _finish(
            settings,
            job_id,
            me,
            "failed",
            error=f"gave up after {job['attempts']} attempts: {reason}",
            error_type="transient",
        )
        return Outcome("failed")
    except TilewrightError as exc:
        reporter.stop()
        if getattr(exc, "http_status", 400) >= 500 and job["attempts"] < job["max_attempts"]:  # e.g. write errors
            delay = _backoff(settings, job["attempts"])
            _requeue_later(settings, job_id, me, delay, str(exc))
            return Outcome("retry", delay)
        _finish(settings, job_id, me, "failed", error=one_line(exc, None), error_type=type(exc).__name__)
        return Outcome("failed")
    except Exception as exc:
        reporter.stop()
        log.exception("job %s: internal error", job_id)
        _finish(
            settings,
            job_id,
            me,
            "failed",
            error=f"internal error: {type(exc).__name__}: {exc}"[:500],
            error_type="internal",
        )
        return Outcome("failed")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    reporter.stop()
    won = _finish(settings, job_id, me, "succeeded", outputs=outputs)
    log.info("job %s succeeded%s", job_id, "" if won else " (its result was not recorded: no longer its owner)")
    return Outcome("succeeded" if won else "skipped")


def _not_claimed(job_id: str, settings: Settings) -> Outcome:
    """Why we could not claim: gone or finished (nothing to do), running elsewhere, or not due yet."""
    try:
        job = store.get(settings, job_id)
    except store.JobNotFoundError:
        return Outcome("skipped")
    if job["state"] == "running":
        return Outcome("busy", max(1.0, min(10.0, settings.job_stale_seconds / 3)))
    if job["state"] == "queued":
        due = store.due_at(settings, job_id)
        wait = (due - utcnow()).total_seconds() if due else 0.0
        return Outcome("retry", max(0.2, wait))
    return Outcome("skipped")
