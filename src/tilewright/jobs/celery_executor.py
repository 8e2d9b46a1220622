"""The Celery executor: publishes job ids to the broker (`tilewright worker` runs them), and a monitor
thread in the server that keeps Celery mode honest and self-healing.

Every `celery_recovery_interval` seconds the monitor
- checks the broker (a connection, bounded to about a second) and pings the workers (Celery's
  control `ping`, one second): `/readyz` reads these results, so it answers at once and says which
  of broker and workers is down;
- requeues running jobs whose worker died (`store.requeue_dead`) and sends them again;
- sends again the queued jobs whose message may be lost (`resend.Resender`).

A submit that cannot reach the broker does not fail the request: the job is recorded and stays
queued, the broker is marked down (so `/readyz` answers 503 naming it), and the monitor sends the
job once the broker answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from tilewright.config import Settings
from tilewright.jobs import store
from tilewright.jobs.broker import broker_reachable
from tilewright.jobs.celery_app import make_celery
from tilewright.jobs.resend import Resender
from tilewright.logs import redact

log = logging.getLogger(__name__)
CHECK_TIMEOUT = 1.0  # seconds for the broker connection and for the workers' answers to a ping


class CeleryExecutor:
    """Publishes job ids to the Celery broker; a monitor thread checks, recovers and re-sends."""

    name = "celery"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = make_celery(settings)  # a broker or result backend Celery cannot load: ConfigError now
        self.resender = Resender(settings.celery_resend_seconds)
        self._lock = threading.Lock()
        self._broker: tuple[bool, str] = (False, "not checked yet")
        self._workers: list[str] | None = None  # None: not asked yet (or the broker is down)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="tilewright-celery-monitor")
        self._thread.start()

    def submit(self, job_id: str, delay: float = 0.0) -> None:
        try:
            self.app.send_task("tilewright.run_job", args=[job_id], countdown=delay or None)
        except Exception as exc:  # noqa: BLE001 - the job is recorded: the monitor sends it when the broker is back
            reason = f"broker {redact(self.settings.broker_url)} unreachable: {type(exc).__name__}: {exc}"
            with self._lock:
                self._broker = (False, reason)
            log.warning("job %s is queued but not sent (%s); it is sent when the broker answers", job_id, reason)
            return
        self.resender.sent(job_id)

    def checks(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            (broker_ok, broker_detail), workers = self._broker, self._workers
        checks: dict[str, dict[str, Any]] = {
            "broker": {
                "ok": broker_ok,
                "detail": f"{redact(self.settings.broker_url)} reachable" if broker_ok else broker_detail,
            }
        }
        if workers is None:
            checks["workers"] = {"ok": False, "detail": "not asked (broker down or not checked yet)"}
        else:
            detail = (
                f"{len(workers)} answered a ping: {', '.join(sorted(workers))}"
                if workers
                else "no worker answered a ping"
            )
            checks["workers"] = {"ok": bool(workers), "count": len(workers), "detail": detail}
        return checks

    def ready(self) -> tuple[bool, str]:
        checks = self.checks()
        bad = [f"{name}: {c['detail']}" for name, c in checks.items() if not c["ok"]]
        return not bad, "; ".join(bad) or f"celery: {checks['workers']['detail']}"

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.app.close()

    def _loop(self) -> None:
        first = True
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self.tick(resend_all=first)
                first = False
            except Exception as exc:  # noqa: BLE001 - e.g. the database is down: keep looking
                log.warning("celery monitor: %s: %s", type(exc).__name__, exc)
            self._stopping.wait(max(0.1, self.settings.celery_recovery_interval - (time.monotonic() - started)))

    def tick(self, resend_all: bool = False) -> None:
        """One round: broker, workers, recovery. `resend_all`: send every queued job (at start: a broker
        restart may have lost them all; duplicates are no-ops)."""
        ok, reason = broker_reachable(self.settings.broker_url, timeout=CHECK_TIMEOUT)
        workers = self._ping() if ok else None
        with self._lock:
            self._broker, self._workers = (ok, reason), workers
        if not ok:
            return
        for job_id in store.requeue_dead(self.settings):
            log.warning("job %s: its worker died; requeued and sent again", job_id)
            self.submit(job_id)
        waiting = store.waiting_jobs(self.settings)
        again = [job_id for job_id, _ in waiting] if resend_all else self.resender.due(waiting)
        if again and not resend_all:
            log.warning("sending %d queued job(s) again (not started within %g s)", len(again), self.resender.first)
        for job_id in again:
            self.submit(job_id)

    def _ping(self) -> list[str]:
        try:
            replies = self.app.control.ping(timeout=CHECK_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - the broker went away between the two checks
            log.warning("celery monitor: ping failed: %s: %s", type(exc).__name__, exc)
            return []
        return [name for reply in replies for name in reply]
