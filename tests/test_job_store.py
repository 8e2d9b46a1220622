"""The job store's conformance suite, run on SQLite and on PostgreSQL (a fresh database each test): the
schema's migrations, idempotent submission, the conditional state transitions, the images table, and how
a running job whose owner died (or only looks dead) is treated: leases, cancel, retry."""

from __future__ import annotations

import socket
import subprocess
import threading
from datetime import timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, select, text, update

from pg_services import migration_head
from tilewright.config import Settings
from tilewright.db import MIGRATIONS, get_engine, init_db, session_scope
from tilewright.jobs import store
from tilewright.jobs.lease import namespace, worker_id
from tilewright.jobs.models import Image, Job, utcnow
from tilewright.jobs.runner import execute


@pytest.fixture
def settings(database_url, tmp_path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, job_stale_seconds=30)
    init_db(settings)
    return settings


def _ping(settings: Settings, nonce: str) -> str:
    job, created = store.submit(settings, "ping", {"seconds": 0, "nonce": nonce}, key=f"key-{nonce}", executor="x")
    assert created
    return job["id"]


def _dead_pid() -> int:
    """The pid of a process that has just exited (not reused this soon)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _set(settings: Settings, job_id: str, **values) -> None:
    with session_scope(settings) as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def _running_as(settings: Settings, job_id: str, owner: str, *, lease_seconds: float) -> None:
    """Make the job look claimed by `owner`, its last heartbeat now and its lease running `lease_seconds` more."""
    assert store.claim(settings, job_id, owner) is not None
    now = utcnow()
    _set(settings, job_id, heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_seconds))


def test_migrations_reach_head_and_running_again_changes_nothing(settings):
    engine = get_engine(settings.resolved_database_url(), settings)
    columns = {c["name"] for c in inspect(engine).get_columns("jobs")}
    assert {"lease_expires_at", "heartbeat_at", "worker"} <= columns
    assert {"jobs", "images", "alembic_version"} <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == migration_head()
    assert "name" in {c["name"] for c in inspect(engine).get_columns("images")}  # the name as uploaded
    init_db(settings)  # a second start: nothing to do, nothing broken
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_an_old_database_is_upgraded_and_its_running_jobs_judged_by_their_heartbeat(database_url, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=database_url, job_stale_seconds=30)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = database_url
    command.upgrade(config, "0001")  # a database of the release before leases
    old = utcnow() - timedelta(minutes=5)
    with get_engine(database_url).begin() as conn:
        for job_id, heartbeat in (("a" * 32, old), ("b" * 32, utcnow())):
            conn.execute(
                text(
                    "INSERT INTO jobs (id, kind, params, key, state, progress, stage, attempts, max_attempts,"
                    " cancel_requested, worker, created_at, started_at, heartbeat_at) VALUES (:id, 'ping', '{}',"
                    " :id, 'running', 0.5, 'waiting', 1, 3, false, :worker, :t, :t, :t)"
                ),
                {"id": job_id, "worker": f"{socket.gethostname()}:{_dead_pid()}", "t": heartbeat},
            )
    init_db(settings)
    # an owner id of the old form says nothing about namespaces: only the heartbeat counts
    assert store.requeue_dead(settings) == ["a" * 32]
    assert store.get(settings, "a" * 32)["state"] == "queued"
    assert store.get(settings, "b" * 32)["state"] == "running"


def test_the_same_key_is_one_job_even_when_submitted_at_once(settings):
    results: list[tuple[dict, bool]] = []

    def submit() -> None:
        results.append(store.submit(settings, "ping", {"nonce": "same"}, key="same-key", executor="embedded"))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len({job["id"] for job, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(store.list_jobs(settings)) == 1


def test_only_one_of_many_claims_wins_and_only_the_owner_reports_and_finishes(settings):
    job_id = _ping(settings, "claim")
    owners = [worker_id() for _ in range(8)]
    won: list[str] = []

    def claim(me: str) -> None:
        if store.claim(settings, job_id, me) is not None:
            won.append(me)

    threads = [threading.Thread(target=claim, args=(me,)) for me in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    owner, other = won[0], next(me for me in owners if me != won[0])
    assert store.report(settings, job_id, other, 0.5, "x") == (False, False)
    assert store.report(settings, job_id, owner, 0.5, "halfway") == (True, False)
    assert not store.finish(settings, job_id, other, "succeeded", outputs={"by": "other"})
    assert store.finish(settings, job_id, owner, "succeeded", outputs={"by": "owner"})
    job = store.get(settings, job_id)
    assert job["state"] == "succeeded" and job["outputs"] == {"by": "owner"} and job["attempts"] == 1
    assert store.claim(settings, job_id, other) is None  # a finished job is never claimed again
    with pytest.raises(store.JobStateError, match="already succeeded"):
        store.cancel(settings, job_id)
    with pytest.raises(store.JobStateError, match="only failed or cancelled"):
        store.retry(settings, job_id)


def test_a_job_requeued_later_is_not_due_before_its_time(settings):
    job_id = _ping(settings, "later")
    me = worker_id()
    store.claim(settings, job_id, me)
    assert store.requeue_later(settings, job_id, me, 60, "storage down")
    assert store.due_jobs(settings, exclude=set(), limit=10) == []
    assert store.claim(settings, job_id, worker_id()) is None
    _set(settings, job_id, not_before=utcnow() - timedelta(seconds=1))
    assert store.due_jobs(settings, exclude=set(), limit=10) == [job_id]


def test_images_table_keeps_big_files_and_finds_them_by_collection_and_digest(settings):
    with session_scope(settings) as session:
        for i in range(3):
            session.add(
                Image(
                    id=store.new_id(),
                    collection="big" if i < 2 else "other",
                    filename=f"{i}.svs",
                    path=f"/x/{i}.svs",
                    size=5 * 2**32 + i,  # past 32 bits: PostgreSQL's BIGINT, not INTEGER
                    sha256=f"{i:064x}",
                    job_id=None,
                )
            )
    with session_scope(settings) as session:
        big = session.scalars(select(Image).where(Image.collection == "big").order_by(Image.filename)).all()
        assert [image.size for image in big] == [5 * 2**32, 5 * 2**32 + 1]
        assert session.scalars(select(Image).where(Image.sha256 == f"{2:064x}")).one().collection == "other"


def test_a_live_owner_with_our_hostname_in_another_pid_namespace_keeps_its_job(settings):
    # a container with host networking (or a cloned VM): same hostname, and its pid means nothing here
    host = socket.gethostname()
    other_namespace = "ffffffff" if namespace() != "ffffffff" else "00000000"
    owners = {
        "other namespace": f"{host}:{_dead_pid()}:{other_namespace}:0123abcd",
        "before namespaces": f"{host}:{_dead_pid()}:0123abcd",  # the owner id of the release before
        "oldest form": f"{host}:{_dead_pid()}",
    }
    ids = {what: _ping(settings, what) for what in owners}
    for what, owner in owners.items():
        _running_as(settings, ids[what], owner, lease_seconds=30)
    assert store.requeue_dead(settings) == []
    for what, job_id in ids.items():
        assert store.claim(settings, job_id, worker_id()) is None, what
        job = store.get(settings, job_id)
        assert job["state"] == "running" and job["attempts"] == 1, what
        assert store.report(settings, job_id, owners[what], 0.7, "still here") == (True, False)


def test_a_job_whose_lease_ran_out_is_requeued_and_claimed_again(settings):
    stale = _ping(settings, "stale")
    fresh = _ping(settings, "fresh")
    elsewhere = f"otherhost:{_dead_pid()}:12345678:0123abcd"
    _running_as(settings, stale, elsewhere, lease_seconds=-1)
    _running_as(settings, fresh, elsewhere, lease_seconds=30)
    assert store.requeue_dead(settings) == [stale]
    assert store.get(settings, stale)["state"] == "queued" and store.get(settings, fresh)["state"] == "running"
    assert store.report(settings, stale, elsewhere, 0.9, "late") == (False, False)  # its old owner lost it
    job = store.claim(settings, stale, worker_id())
    assert job is not None and job["attempts"] == 2


def test_a_dead_owner_in_our_own_namespace_is_taken_over_at_once(settings):
    job_id = _ping(settings, "ours")
    _running_as(settings, job_id, f"{socket.gethostname()}:{_dead_pid()}:{namespace()}:0123abcd", lease_seconds=30)
    job = store.claim(settings, job_id, worker_id())  # no waiting for the lease: the kernel says it is gone
    assert job is not None and job["state"] == "running" and job["attempts"] == 2


def test_a_job_that_kills_every_worker_fails_after_max_attempts(settings):
    job_id = _ping(settings, "killer")
    for _attempt in range(settings.job_max_attempts):
        _running_as(settings, job_id, f"otherhost:1:12345678:{_attempt}", lease_seconds=-1)
        store.requeue_dead(settings)
    job = store.get(settings, job_id)
    assert job["state"] == "failed" and job["error_type"] == "worker_lost"
    assert "died 3 times" in job["error"]


def test_cancel_of_a_job_whose_worker_died_ends_cancelled_and_retry_runs_it(settings):
    job_id = _ping(settings, "orphan")
    owner = f"otherhost:{_dead_pid()}:12345678:0123abcd"
    _running_as(settings, job_id, owner, lease_seconds=30)
    assert store.cancel(settings, job_id)["state"] == "running"  # a live owner: asked, it stops by itself
    assert store.report(settings, job_id, owner, 0.5, "x") == (True, True)
    _set(settings, job_id, lease_expires_at=utcnow() - timedelta(seconds=1))  # ... but it died instead
    job = store.cancel(settings, job_id)
    assert job["state"] == "cancelled" and job["stage"] == "cancelled" and job["finished_at"]
    assert store.retry(settings, job_id)["state"] == "queued"
    assert execute(job_id, settings).status == "succeeded"
    job = store.get(settings, job_id)
    assert job["state"] == "succeeded" and job["attempts"] == 2


def test_requeue_of_a_dead_owner_that_was_asked_to_cancel_ends_cancelled(settings):
    job_id = _ping(settings, "sweep-cancel")
    _running_as(settings, job_id, "otherhost:1:12345678:0123abcd", lease_seconds=30)
    _set(settings, job_id, cancel_requested=True, lease_expires_at=utcnow() - timedelta(seconds=1))
    assert store.requeue_dead(settings) == []
    assert store.get(settings, job_id)["state"] == "cancelled"
