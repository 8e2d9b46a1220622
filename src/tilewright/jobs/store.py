"""Job records: submit (idempotent by key), claim, report, finish, cancel, retry, recover.

Every state change is one conditional UPDATE (`... WHERE state = 'queued'`, `... AND
worker = me`), so two processes racing for a job cannot both win, whatever the
executor: the database, not the queue, is the source of truth. A running job's
owner renews its lease with each heartbeat (`jobs.lease`); a job whose owner died
is requeued, cancelled or failed by whoever looks first (`requeue_dead`, `claim`,
`cancel`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Executable, Select, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tilewright.config import Settings
from tilewright.db import session_scope
from tilewright.errors import InputError, TilewrightError
from tilewright.jobs.lease import is_dead, lease_until
from tilewright.jobs.models import FINISHED, STATES, Job, utcnow


class JobNotFoundError(TilewrightError):
    """No job (or image) has that id."""

    http_status = 404


class JobStateError(TilewrightError):
    """The job is not in a state that allows this (e.g. retrying a job that succeeded)."""

    http_status = 409


def new_id() -> str:
    return uuid.uuid4().hex


def _changed(session: Session, statement: Executable) -> int:
    """How many rows an UPDATE changed (`Session.execute` is typed as returning a plain `Result`)."""
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def submit(settings: Settings, kind: str, params: dict[str, Any], key: str, executor: str) -> tuple[dict, bool]:
    """Insert a queued job, or return the existing job with the same key. -> (job, created)."""
    job = Job(
        id=new_id(),
        kind=kind,
        params=params,
        key=key,
        state="queued",
        progress=0.0,
        stage="queued",
        attempts=0,
        max_attempts=settings.job_max_attempts,
        cancel_requested=False,
        executor=executor,
        created_at=utcnow(),
    )
    try:
        with session_scope(settings) as session:
            session.add(job)
            return job.to_dict(), True
    except IntegrityError:
        with session_scope(settings) as session:
            existing = session.scalars(select(Job).where(Job.key == key)).one_or_none()
            if existing is None:  # pragma: no cover - a key clash that vanished: try once more
                raise
            return existing.to_dict(), False


def get(settings: Settings, job_id: str) -> dict:
    with session_scope(settings) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        return job.to_dict()


def get_many(settings: Settings, job_ids: Iterable[str | None]) -> dict[str, dict]:
    """Jobs by id in one query (a page of images and their jobs); ids with no job are left out."""
    ids = sorted({i for i in job_ids if i})
    if not ids:
        return {}
    with session_scope(settings) as session:
        return {job.id: job.to_dict() for job in session.scalars(select(Job).where(Job.id.in_(ids)))}


def list_jobs(
    settings: Settings, *, state: str | None = None, kind: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict]:
    if state is not None and state not in STATES:
        raise InputError(f"unknown state {state!r}; choose one of {', '.join(STATES)}")
    query = select(Job).order_by(Job.created_at.desc()).limit(limit).offset(offset)
    if state:
        query = query.where(Job.state == state)
    if kind:
        query = query.where(Job.kind == kind)
    with session_scope(settings) as session:
        return [job.to_dict() for job in session.scalars(query)]


def claim(settings: Settings, job_id: str, me: str, *, take_over_dead: bool = True) -> dict | None:
    """Make `me` the owner of a due queued job (or of a running job whose owner died). None if not won."""
    now = utcnow()
    values = {
        "state": "running",
        "worker": me,
        "attempts": Job.attempts + 1,
        "started_at": now,
        "heartbeat_at": now,
        "lease_expires_at": lease_until(settings, now),
        "stage": "starting",
        "progress": 0.0,
        "error": None,
        "error_type": None,
        "not_before": None,
    }
    due = (Job.id == job_id, Job.state == "queued", or_(Job.not_before.is_(None), Job.not_before <= now))
    with session_scope(settings) as session:
        won = _changed(session, update(Job).where(*due).values(**values))
        if not won and take_over_dead:
            job = session.get(Job, job_id)
            if job is not None and _reap(session, job, settings, now) == "queued":
                won = _changed(session, update(Job).where(*due).values(**values))
    if not won:
        return None
    return get(settings, job_id)


def report(settings: Settings, job_id: str, me: str, progress: float, stage: str) -> tuple[bool, bool]:
    """Write progress and a heartbeat (renewing the lease). -> (still the owner, cancel requested)."""
    now = utcnow()
    with session_scope(settings) as session:
        owned = _changed(
            session,
            update(Job)
            .where(Job.id == job_id, Job.worker == me, Job.state == "running")
            .values(
                progress=progress, stage=stage[:200], heartbeat_at=now, lease_expires_at=lease_until(settings, now)
            ),
        )
        cancel = session.scalar(select(Job.cancel_requested).where(Job.id == job_id))
    return bool(owned), bool(cancel)


def finish(
    settings: Settings,
    job_id: str,
    me: str,
    state: str,
    *,
    outputs: dict | None = None,
    error: str | None = None,
    error_type: str | None = None,
) -> bool:
    """Record the end of the owner's run; False if `me` no longer owns it (its result is then dropped)."""
    assert state in FINISHED
    now = utcnow()
    with session_scope(settings) as session:
        job = session.get(Job, job_id)
        started = job.started_at if job else None
        values: dict[str, Any] = {
            "state": state,
            "finished_at": now,
            "heartbeat_at": now,
            "lease_expires_at": None,
            "error": error,
            "error_type": error_type,
            "outputs": outputs,
            "duration_seconds": (now - started).total_seconds() if started else None,
        }
        if state == "succeeded":
            values.update(progress=1.0, stage="done")
        else:
            values.update(stage=state)
        return bool(
            _changed(
                session, update(Job).where(Job.id == job_id, Job.worker == me, Job.state == "running").values(**values)
            )
        )


def requeue_later(settings: Settings, job_id: str, me: str, delay: float, error: str) -> bool:
    """Put a job that failed for a transient reason back in the queue, due after `delay` seconds."""
    with session_scope(settings) as session:
        return bool(
            _changed(
                session,
                update(Job)
                .where(Job.id == job_id, Job.worker == me, Job.state == "running")
                .values(
                    state="queued",
                    stage=f"retrying in {delay:g} s",
                    error=error,
                    error_type="transient",
                    not_before=utcnow() + timedelta(seconds=delay),
                    worker=None,
                    lease_expires_at=None,
                ),
            )
        )


def cancel(settings: Settings, job_id: str) -> dict:
    """Cancel a queued job at once; ask a running one to stop (it stops at its next progress report), and end
    one whose owner died at once (nobody would ever read the request)."""
    now = utcnow()
    with session_scope(settings) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == "queued")
            .values(state="cancelled", stage="cancelled", cancel_requested=True, finished_at=now)
        )
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == "running")
            .values(cancel_requested=True, stage="cancelling")
        )
        running = session.get(Job, job_id)
        if running is not None:
            _reap(session, running, settings, now)
    job = get(settings, job_id)
    if job["state"] in ("succeeded", "failed"):
        raise JobStateError(f"job {job_id} has already {job['state']}; nothing to cancel")
    return job


def retry(settings: Settings, job_id: str) -> dict:
    """Queue a failed or cancelled job again (attempts keep counting; its limit is reset)."""
    with session_scope(settings) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        changed = _changed(
            session,
            update(Job)
            .where(Job.id == job_id, Job.state.in_(("failed", "cancelled")))
            .values(
                state="queued",
                stage="queued",
                progress=0.0,
                error=None,
                error_type=None,
                outputs=None,
                cancel_requested=False,
                finished_at=None,
                not_before=None,
                worker=None,
                max_attempts=Job.attempts + settings.job_max_attempts,
            ),
        )
        if not changed:
            raise JobStateError(f"job {job_id} is {job.state}; only failed or cancelled jobs can be retried")
    return get(settings, job_id)


def _due(*columns: Any) -> Select:
    """Queued jobs whose time has come, oldest first (the embedded dispatcher's queue, the Celery resender's)."""
    now = utcnow()
    return (
        select(*columns)
        .where(Job.state == "queued", or_(Job.not_before.is_(None), Job.not_before <= now))
        .order_by(Job.created_at)
    )


def due_jobs(settings: Settings, *, exclude: set[str], limit: int) -> list[str]:
    """Ids of queued jobs whose time has come, oldest first."""
    with session_scope(settings) as session:
        return [i for i in session.scalars(_due(Job.id).limit(limit + len(exclude))) if i not in exclude][:limit]


def waiting_jobs(settings: Settings, limit: int = 1000) -> list[tuple[str, datetime]]:
    """(id, waiting since: created, or due since when later) of queued jobs that are due, oldest first."""
    query = _due(Job.id, Job.created_at, Job.not_before).limit(limit)
    with session_scope(settings) as session:
        return [(i, max(created, due or created)) for i, created, due in session.execute(query).all()]


def _reap(session: Session, job: Job, settings: Settings, now: datetime) -> str | None:
    """End a running job whose owner is dead: cancelled if a cancel was asked, failed after `max_attempts`
    owners died running it (it keeps killing them), else queued again. -> its new state; None if its owner
    lives (or another process acted first: the UPDATE finds the row as read, or changes nothing)."""
    if job.state != "running" or not is_dead(job, settings, now):
        return None
    values: dict[str, Any]
    if job.cancel_requested:
        values = {"state": "cancelled", "stage": "cancelled", "finished_at": now}
    elif job.attempts >= job.max_attempts:
        values = {
            "state": "failed",
            "stage": "failed",
            "finished_at": now,
            "error_type": "worker_lost",
            "error": f"the worker running this job died {job.attempts} times",
        }
    else:
        values = {"state": "queued", "stage": "requeued (worker died)", "worker": None}
    as_read = (
        Job.id == job.id,
        Job.state == "running",
        Job.worker == job.worker,
        Job.heartbeat_at == job.heartbeat_at,  # a heartbeat since: the owner lives after all
    )
    changed = _changed(session, update(Job).where(*as_read).values(lease_expires_at=None, **values))
    return values["state"] if changed else None


def requeue_dead(settings: Settings) -> list[str]:
    """Running jobs whose owner died: back to queued (or cancelled, or failed after too many attempts).
    -> the ids queued again (an executor that does not poll the database sends them out again)."""
    now = utcnow()
    with session_scope(settings) as session:
        running = session.scalars(select(Job).where(Job.state == "running")).all()
        return [job.id for job in running if _reap(session, job, settings, now) == "queued"]


def due_at(settings: Settings, job_id: str) -> datetime | None:
    """When a queued job that is waiting to be retried is due (None: now, or no such job)."""
    with session_scope(settings) as session:
        return session.scalar(select(Job.not_before).where(Job.id == job_id))


def counts_by_state(settings: Settings) -> dict[str, int]:
    with session_scope(settings) as session:
        rows = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
    counts = dict.fromkeys(STATES, 0)
    counts.update(dict(rows))
    return counts


def duration_buckets(settings: Settings, bounds: list[float]) -> tuple[dict[str, list[int]], dict[str, float]]:
    """Per kind: cumulative counts of finished-job durations <= each bound (+Inf last), and their sums."""
    columns = [func.sum(case((Job.duration_seconds <= b, 1), else_=0)) for b in bounds]
    query = (
        select(Job.kind, *columns, func.count(), func.coalesce(func.sum(Job.duration_seconds), 0.0))
        .where(Job.duration_seconds.is_not(None))
        .group_by(Job.kind)
    )
    buckets: dict[str, list[int]] = {}
    sums: dict[str, float] = {}
    with session_scope(settings) as session:
        for row in session.execute(query).all():
            buckets[row[0]] = [int(v or 0) for v in row[1:-1]]
            sums[row[0]] = float(row[-1])
    return buckets, sums
