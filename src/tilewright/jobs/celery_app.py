"""The Celery side: one task, `tilewright.run_job(job_id)`, which calls the same `runner.execute`.

The job database, not the broker, is the source of truth, so the broker is used as a doorbell:

- No result backend unless `TILEWRIGHT_RESULT_BACKEND` names one: the job record is the result
  (Celery 5 has no `amqp` result backend, so using the broker URL broke every RabbitMQ submit).
- Early acknowledgement (`acks_late` off): a message is acknowledged when its job starts, so no
  broker limit on unacknowledged messages applies to a running job, however long: RabbitMQ's
  `consumer_timeout` (30 min; 3.10 has no per-queue `x-consumer-timeout`, that came in 3.12) and
  Redis' visibility timeout. A worker that dies mid-job loses nothing all the same: its job stays
  `running` with a dead owner, and the server's recovery loop (`celery_executor`) puts it back in the
  queue and sends it again; a message lost before its job started leaves the job `queued`, and the
  same loop sends it again.
- A message a busy worker has prefetched but not started can still outlive `consumer_timeout`:
  RabbitMQ then closes the channel, and `broker_channel_error_retry` makes the worker reconnect (the
  broker requeues the message) instead of exiting for good. Redis workers do not prefetch at all.
- A second delivery of a job that is running or finished is dropped (the claim in the database
  decides), so a job completes exactly once; progress goes straight to the job record.
"""

from __future__ import annotations

import logging

from celery import Celery, Task, signals

from tilewright.config import Settings, get_settings
from tilewright.db import dispose_engines, init_db
from tilewright.errors import ConfigError
from tilewright.jobs.lifetime import set_pdeathsig
from tilewright.jobs.runner import execute
from tilewright.logs import redact

log = logging.getLogger(__name__)
_settings: Settings | None = None
REDIS_SCHEMES = ("redis", "rediss", "sentinel")


def make_celery(settings: Settings) -> Celery:
    """The Celery app of these settings; a broker or result backend Celery cannot load is a ConfigError."""
    global _settings
    _settings = settings
    app = Celery("tilewright", broker=settings.broker_url, backend=settings.result_backend or None)
    visibility = settings.celery_visibility_timeout
    redis = settings.broker_url.split(":", 1)[0].split("+")[0].lower() in REDIS_SCHEMES
    app.conf.update(
        task_acks_late=False,  # see the module docstring: the database and the recovery loop keep jobs safe
        task_ignore_result=True,  # the job record is the result
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=redis,  # Redis only (Celery ignores it, with a warning, on other brokers)
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for its broker however long an outage lasts
        broker_channel_error_retry=True,  # RabbitMQ's `PreconditionFailed` (consumer_timeout): reconnect
        broker_connection_timeout=3,
        worker_cancel_long_running_tasks_on_connection_loss=False,  # the jobs were acknowledged: let them end
        worker_hijack_root_logger=False,
        # a submit while the broker is down fails within seconds; the job stays queued and is sent again
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5},
        broker_transport_options={
            "visibility_timeout": visibility,
            # look for abandoned messages often enough for the visibility timeout to mean something
            "unacked_restore_interval": max(1, min(10, visibility // 4)),
            "unacked_restore_throttle": 1,
        },
    )
    app.task(bind=True, name="tilewright.run_job", max_retries=None)(_run_job)
    _check(app, settings)
    return app


def _check(app: Celery, settings: Settings) -> None:
    """Load the broker transport and the result backend now (no connection), not at the first submit."""
    try:
        _ = app.connection_for_write().transport
    except Exception as exc:
        raise ConfigError(
            f"TILEWRIGHT_BROKER_URL {redact(settings.broker_url)}: Celery cannot use it: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        _ = app.backend
    except Exception as exc:
        raise ConfigError(
            f"TILEWRIGHT_RESULT_BACKEND {redact(settings.result_backend)}: Celery cannot use it: "
            f"{type(exc).__name__}: {exc} (leave it empty: tilewright needs no result backend)"
        ) from exc


def _run_job(self: Task, job_id: str) -> str:
    settings = _settings or get_settings()
    outcome = execute(job_id, settings)
    if outcome.status == "retry":  # a transient failure, or a duplicate delivered before the job is due
        raise self.retry(countdown=outcome.retry_in, max_retries=None)
    # "busy" (running elsewhere) is dropped: if that worker dies, the server's recovery loop sends the job again
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
