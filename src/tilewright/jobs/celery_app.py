"""The Celery side: one task, `tilewright.run_job(job_id)`, which calls the same `runner.execute`.

`acks_late` + `reject_on_worker_lost`: the broker keeps a job's message until the
job has ended, so a worker killed mid-job does not lose it; with Redis, a message
taken by a worker that died entirely comes back after `celery_visibility_timeout`.
A second delivery of a job that is still running elsewhere waits and looks again
(`busy`), so a job completes exactly once; progress goes straight to the job record.
"""

from __future__ import annotations

import logging

from celery import Celery, Task, signals

from tilewright.config import Settings, get_settings
from tilewright.db import dispose_engines, init_db
from tilewright.jobs.lifetime import set_pdeathsig
from tilewright.jobs.runner import execute

log = logging.getLogger(__name__)
_settings: Settings | None = None


def make_celery(settings: Settings) -> Celery:
    global _settings
    _settings = settings
    app = Celery("tilewright", broker=settings.broker_url, backend=settings.result_backend or settings.broker_url)
    visibility = settings.celery_visibility_timeout
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,  # the job record is the result
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        broker_transport_options={
            "visibility_timeout": visibility,
            # look for abandoned messages often enough for the visibility timeout to mean something
            "unacked_restore_interval": max(1, min(10, visibility // 4)),
            "unacked_restore_throttle": 1,
        },
    )
    app.task(bind=True, name="tilewright.run_job", acks_late=True, reject_on_worker_lost=True, max_retries=None)(
        _run_job
    )
    return app


def _run_job(self: Task, job_id: str) -> str:
    settings = _settings or get_settings()
    outcome = execute(job_id, settings)
    if outcome.status in ("retry", "busy"):
        raise self.retry(countdown=outcome.retry_in, max_retries=None)
    return outcome.status


@signals.worker_process_init.connect
def _child_started(**_kwargs: object) -> None:
    """A forked pool child: its own database connections, and death with its parent."""
    dispose_engines()
    set_pdeathsig()


def run_worker(
    settings: Settings, *, concurrency: int | None = None, hostname: str | None = None, loglevel: str = "INFO"
) -> None:
    """`tilewright worker`: migrate the database, then consume jobs until stopped."""
    init_db(settings)
    dispose_engines()
    app = make_celery(settings)
    argv = [
        "worker",
        f"--concurrency={concurrency or settings.concurrency}",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
        "--pool=prefork",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)
