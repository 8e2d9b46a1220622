"""Executors: where `runner.execute` runs. Both run the very same task functions.

- `EmbeddedExecutor`: a process pool inside `tilewright serve`. The database is its
  queue: a dispatcher thread claims due jobs oldest first, so jobs left queued or
  running by a process that died are simply picked up again at the next start.
- `CeleryExecutor` (celery_executor.py): publishes the job id to a broker; `tilewright worker` runs it.
- `FallbackExecutor`: embedded while the broker cannot be reached, Celery again once it answers.

`make_executor` picks one from the settings and falls back (loudly) to embedded
when the broker cannot be reached, unless `broker_fallback` is off.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from tilewright.config import Settings
from tilewright.jobs import store
from tilewright.jobs.broker import BrokerUnavailableError, broker_reachable
from tilewright.jobs.lifetime import set_pdeathsig
from tilewright.jobs.runner import execute
from tilewright.logs import setup_logging

__all__ = [
    "BrokerUnavailableError",
    "EmbeddedExecutor",
    "Executor",
    "FallbackExecutor",
    "broker_reachable",
    "make_executor",
]
log = logging.getLogger(__name__)
REAP_INTERVAL = 5.0


class Executor(Protocol):
    @property
    def name(self) -> str: ...

    def start(self) -> None: ...

    def submit(self, job_id: str, delay: float = 0.0) -> None: ...

    def stop(self) -> None: ...

    def ready(self) -> tuple[bool, str]: ...

    def checks(self) -> dict[str, dict[str, Any]]:
        """The executor's own parts for `/readyz` (Celery: broker, workers), each `{"ok", "detail"}`."""
        ...


_worker_settings: Settings | None = None


def _init_pool_worker(settings: Settings) -> None:
    global _worker_settings
    set_pdeathsig()
    _worker_settings = settings
    setup_logging(settings)


def _run_in_pool(job_id: str) -> tuple[str, float]:
    assert _worker_settings is not None
    outcome = execute(job_id, _worker_settings)
    return outcome.status, outcome.retry_in


class EmbeddedExecutor:
    """A pool of `concurrency` processes fed from the database by one dispatcher thread."""

    name = "embedded"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.concurrency = settings.concurrency
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._inflight: dict[str, Future] = {}
        self._pool: ProcessPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the server has threads (and libvips state) a fork would copy half-way
        return ProcessPoolExecutor(
            max_workers=self.concurrency,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_pool_worker,
            initargs=(self.settings,),
        )

    def start(self) -> None:
        requeued = store.requeue_dead(self.settings)
        if requeued:
            log.warning("requeued %d job(s) left running by a process that died", len(requeued))
        self._thread = threading.Thread(target=self._loop, daemon=True, name="tilewright-dispatcher")
        self._thread.start()

    def submit(self, job_id: str, delay: float = 0.0) -> None:
        self._wake.set()  # the job is already queued in the database; just look now

    def ready(self) -> tuple[bool, str]:
        alive = self._thread is not None and self._thread.is_alive()
        return alive, f"embedded pool of {self.concurrency}" if alive else (self.error or "dispatcher not running")

    def checks(self) -> dict[str, dict[str, Any]]:
        return {}

    def stop(self, drain: bool = False) -> None:
        """Stop taking jobs; `drain`: let the running ones finish (else kill them: they are requeued)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._pool is not None:
            if drain:
                self._pool.shutdown(wait=True)
                return
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.kill()  # running jobs are requeued at the next start (their owner is dead)
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        # this long-lived thread starts the pool processes: their PDEATHSIG is tied to it
        last_reap = time.monotonic()
        while not self._stopping.is_set():
            try:
                self._dispatch()
                if time.monotonic() - last_reap > REAP_INTERVAL:
                    last_reap = time.monotonic()
                    if store.requeue_dead(self.settings):
                        continue
            except Exception as exc:  # noqa: BLE001 - keep dispatching (e.g. the database was busy)
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("dispatcher: %s", self.error)
            self._wake.wait(0.5)
            self._wake.clear()

    def _dispatch(self) -> None:
        for job_id, future in list(self._inflight.items()):
            if future.done():
                del self._inflight[job_id]
                exc = future.exception()
                if isinstance(exc, BrokenProcessPool):
                    log.error("a pool process died running job %s; its job will be requeued", job_id)
                    self._pool = None
                elif exc is not None:
                    log.error("job %s: %s", job_id, exc)
        if self._pool is None:
            if self._inflight:  # wait until every future of the broken pool has settled
                return
            self._pool = self._new_pool()
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return
        for job_id in store.due_jobs(self.settings, exclude=set(self._inflight), limit=free):
            future = self._pool.submit(_run_in_pool, job_id)
            future.add_done_callback(lambda _f: self._wake.set())
            self._inflight[job_id] = future


class FallbackExecutor:
    """Embedded while the broker is down; every `celery_recovery_interval` it asks the broker, and once it
    answers, starts the Celery executor (which sends every queued job) and lets the embedded pool finish
    what it is running. The server thus never stays embedded because the broker was down at its start."""

    def __init__(self, settings: Settings, reason: str) -> None:
        self.settings, self.reason = settings, reason
        self.current: Executor = EmbeddedExecutor(settings)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="tilewright-broker-watch")

    @property
    def name(self) -> str:
        return self.current.name

    def start(self) -> None:
        self.current.start()
        self._thread.start()

    def submit(self, job_id: str, delay: float = 0.0) -> None:
        self.current.submit(job_id, delay)

    def ready(self) -> tuple[bool, str]:
        ok, detail = self.current.ready()
        return ok, detail if self.current.name == "celery" else f"{detail} (fallen back: {self.reason})"

    def checks(self) -> dict[str, dict[str, Any]]:
        return self.current.checks()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self.current.stop()

    def _watch(self) -> None:
        while not self._stopping.wait(self.settings.celery_recovery_interval):
            ok, self.reason = broker_reachable(self.settings.broker_url, timeout=1.0)
            if not ok:
                continue
            try:
                celery = _celery_executor(self.settings)
                celery.start()
            except Exception as exc:  # noqa: BLE001 - stay embedded and try again at the next round
                self.reason = f"{type(exc).__name__}: {exc}"
                continue
            embedded, self.current = self.current, celery
            log.warning("the broker answers again: back to the Celery executor; the embedded pool drains")
            assert isinstance(embedded, EmbeddedExecutor)
            embedded.stop(drain=True)
            return


def __getattr__(name: str) -> Any:
    """`executors.CeleryExecutor`, as the CLI names it, without loading Celery for everyone else."""
    if name == "CeleryExecutor":
        from tilewright.jobs.celery_executor import CeleryExecutor  # lazy: Celery, only when asked for

        return CeleryExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _celery_executor(settings: Settings) -> Executor:
    # Celery is heavy and needed only with this executor: the embedded server and the CLI never load it
    from tilewright.jobs.celery_executor import CeleryExecutor

    return CeleryExecutor(settings)


def make_executor(settings: Settings) -> Executor:
    """The configured executor; embedded (going back to Celery later) when the broker is down and fallback
    is allowed. A broker or result backend Celery cannot load is a ConfigError, before any connection."""
    if settings.executor != "celery":
        return EmbeddedExecutor(settings)
    check_celery_config(settings)
    ok, reason = broker_reachable(settings.broker_url, timeout=2.0)
    if ok:
        return _celery_executor(settings)
    if not settings.broker_fallback:
        raise BrokerUnavailableError(f"{reason}; refusing to start (TILEWRIGHT_BROKER_FALLBACK=false)")
    message = (
        f"WARNING: {reason}; FALLING BACK TO THE EMBEDDED EXECUTOR until the broker answers "
        "(set TILEWRIGHT_BROKER_FALLBACK=false to refuse)"
    )
    log.error(message)
    print(f"tilewright: {message}", file=sys.stderr, flush=True)
    return FallbackExecutor(settings, reason)


def check_celery_config(settings: Settings) -> None:
    """Raise ConfigError if Celery cannot load the broker transport or the result backend (no connection)."""
    # lazy: Celery, only in Celery mode
    from tilewright.jobs.celery_app import make_celery

    make_celery(settings).close()
