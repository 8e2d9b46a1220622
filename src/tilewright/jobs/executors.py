"""Executors: where `runner.execute` runs. Both run the very same task functions.

- `EmbeddedExecutor`: a process pool inside `tilewright serve`. The database is its
  queue: a dispatcher thread claims due jobs oldest first, so jobs left queued or
  running by a process that died are simply picked up again at the next start.
- `CeleryExecutor`: publishes the job id to a broker; `tilewright worker` runs it.

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
from typing import Protocol

from tilewright.config import Settings
from tilewright.errors import TilewrightError
from tilewright.jobs import store
from tilewright.jobs.lifetime import set_pdeathsig
from tilewright.jobs.runner import execute
from tilewright.logs import redact, setup_logging

log = logging.getLogger(__name__)
REAP_INTERVAL = 5.0


class BrokerUnavailableError(TilewrightError):
    """The Celery broker cannot be reached and falling back to embedded is switched off."""

    exit_code = 1
    http_status = 503


class Executor(Protocol):
    name: str

    def start(self) -> None: ...

    def submit(self, job_id: str, delay: float = 0.0) -> None: ...

    def stop(self) -> None: ...

    def ready(self) -> tuple[bool, str]: ...


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

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._pool is not None:
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


class CeleryExecutor:
    """Publishes job ids to the Celery broker; `tilewright worker` processes run them."""

    name = "celery"

    def __init__(self, settings: Settings) -> None:
        # Celery is heavy and needed only with this executor: the embedded server and the CLI never load it
        from tilewright.jobs.celery_app import make_celery

        self.settings = settings
        self.app = make_celery(settings)

    def start(self) -> None:
        # a broker restart may have lost messages: publish every queued job again (duplicates are no-ops)
        for job_id in store.due_jobs(self.settings, exclude=set(), limit=10_000):
            self.submit(job_id)

    def submit(self, job_id: str, delay: float = 0.0) -> None:
        self.app.send_task("tilewright.run_job", args=[job_id], countdown=delay or None)

    def ready(self) -> tuple[bool, str]:
        ok, reason = broker_reachable(self.settings.broker_url, timeout=2.0)
        return ok, "celery broker reachable" if ok else reason

    def stop(self) -> None:
        self.app.close()


def broker_reachable(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    from kombu import Connection  # Celery's transport: loaded only when a broker is configured

    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        return True, ""
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        return False, f"broker {redact(url)} unreachable: {type(exc).__name__}: {exc}"


def make_executor(settings: Settings) -> Executor:
    """The configured executor; embedded when the broker is down and fallback is allowed."""
    if settings.executor == "celery":
        ok, reason = broker_reachable(settings.broker_url)
        if ok:
            return CeleryExecutor(settings)
        if not settings.broker_fallback:
            raise BrokerUnavailableError(f"{reason}; refusing to start (TILEWRIGHT_BROKER_FALLBACK=false)")
        message = (
            f"WARNING: {reason}; FALLING BACK TO THE EMBEDDED EXECUTOR (set TILEWRIGHT_BROKER_FALLBACK=false to refuse)"
        )
        log.error(message)
        print(f"tilewright: {message}", file=sys.stderr, flush=True)
    return EmbeddedExecutor(settings)
