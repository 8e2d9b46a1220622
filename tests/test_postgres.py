"""PostgreSQL as the job database, taken away and limited for real: two hosts migrating one fresh
database at once, a role out of connections, an exhausted pool, the server stopped (503 naming the
database, never 500), a restart while jobs run, and a job's final write meeting a stopped server."""

from __future__ import annotations

import multiprocessing
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import text

from pg_services import migration_head
from services import FINISHED, TILEWRIGHT, assert_error, clean_env, free_port, wait_until
from tilewright.config import Settings
from tilewright.db import DatabaseUnavailableError, dispose_engine, get_engine, init_db
from tilewright.jobs import registry, store
from tilewright.jobs.executors import EmbeddedExecutor
from tilewright.jobs.kind import Task, TaskContext
from tilewright.jobs.runner import execute
from tilewright.jobs.service import submit_job
from tilewright.server import create_app


def _migrate(data_dir: str, url: str, barrier: Any) -> None:
    barrier.wait(timeout=60)  # both processes start the upgrade at the same moment
    init_db(Settings(data_dir=Path(data_dir), database_url=url))


def test_two_hosts_starting_at_once_on_a_fresh_database_migrate_it_once(pg_database, tmp_path):
    # each "host" has its own data folder, so the file lock there cannot serialise them: the database must
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    processes = [
        context.Process(target=_migrate, args=(str(tmp_path / f"host{i}"), pg_database, barrier)) for i in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0]
    with get_engine(pg_database).connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [migration_head()]


@pytest.fixture
def limited(postgres_server, tmp_path):
    """(settings, role) of a database owned by a role limited to 2 connections, its pool at most 2 as well."""
    role = f"lim{uuid.uuid4().hex[:8]}"
    postgres_server.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 2")
    url = postgres_server.database(owner=role)
    # a generous wait for a connection: on a busy machine 20 requests through 2 connections may take seconds
    settings = Settings(
        data_dir=tmp_path, database_url=url, database_pool_size=2, database_max_overflow=0, database_pool_timeout=60
    )
    init_db(settings)
    yield settings, role
    dispose_engine(url)


def test_a_pool_sized_to_the_roles_limit_serves_many_requests_and_answers_503_when_exhausted(limited, postgres_server):
    settings, role = limited
    job, _ = store.submit(settings, "ping", {"seconds": 1.2, "nonce": "pool"}, key="pool", executor="embedded")
    # no lifespan (no executor polling the database): the requests are the only users of the pool
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    with ThreadPoolExecutor(max_workers=20) as threads:
        statuses = list(threads.map(lambda _i: client.get(f"/jobs/{job['id']}").status_code, range(60)))
    assert statuses == [200] * 60  # 20 at once through 2 connections: they wait their turn, none fails

    # the same pool, but waiting 0.5 s for a connection (the app's requests use this process's engine)
    dispose_engine(settings.resolved_database_url())
    engine = get_engine(settings.resolved_database_url(), settings.model_copy(update={"database_pool_timeout": 0.5}))
    with engine.connect(), engine.connect():  # every connection of the pool taken
        body = assert_error(client.get(f"/jobs/{job['id']}"), 503, "unavailable")
        assert f"{role}@127.0.0.1:{postgres_server.port}/" in body["detail"] and "QueuePool limit" in body["detail"]
        assert body["type"] == "DatabaseUnavailableError"

    dispose_engine(settings.resolved_database_url())  # the pool's connections closed: the role's slots free

    def take_slot() -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=postgres_server.port, user=role, dbname="postgres")

    held = [wait_until(take_slot, 30, "a connection slot of the role") for _ in range(2)]  # the role's limit
    try:
        body = assert_error(client.get(f"/jobs/{job['id']}"), 503, "too many connections")
        assert f"{role}@127.0.0.1:{postgres_server.port}/" in body["detail"]
        assert_error(client.post("/jobs", json={"kind": "ping", "params": {}}), 503, "unavailable")
    finally:
        for conn in held:
            conn.close()
    wait_until(lambda: client.get(f"/jobs/{job['id']}").status_code == 200, 30, "the database to answer again")
    # a job's process fits in two connections (the run and its heartbeat thread): the role allows no third
    assert execute(job["id"], settings).status == "succeeded"


def test_a_stopped_database_answers_503_and_the_next_request_after_its_restart_200(
    pg_database, postgres_server, tmp_path
):
    settings = Settings(data_dir=tmp_path, database_url=pg_database)
    init_db(settings)
    job, _ = store.submit(settings, "ping", {"nonce": "down"}, key="down", executor="embedded")
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    assert client.get(f"/jobs/{job['id']}").status_code == 200  # the pool now holds a connection
    postgres_server.stop()
    try:
        for path in (f"/jobs/{job['id']}", "/jobs", "/images"):
            body = assert_error(client.get(path), 503, "job database")
            assert f"127.0.0.1:{postgres_server.port}" in body["detail"] and "Traceback" not in body["detail"]
    finally:
        postgres_server.start()
    # the pooled connection died with the server: pre-ping replaces it, the first request after is a 200
    assert client.get(f"/jobs/{job['id']}").json()["state"] == "queued"


def test_a_database_nobody_answers_is_one_line_naming_it_without_its_password(tmp_path):
    url = f"postgresql+psycopg://tw:s3cret@127.0.0.1:{free_port()}/jobs"
    with pytest.raises(
        DatabaseUnavailableError, match=r"job database postgresql\+psycopg://tw:\*\*\*@127.0.0.1"
    ) as caught:
        init_db(Settings(data_dir=tmp_path, database_url=url))
    assert "s3cret" not in str(caught.value)
    result = subprocess.run(
        [TILEWRIGHT, "jobs"],
        env=clean_env(TILEWRIGHT_DATABASE_URL=url, TILEWRIGHT_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "unavailable: connection failed" in result.stderr and "s3cret" not in result.stderr


def test_a_postgresql_restart_while_jobs_run_loses_none(pg_database, postgres_server, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=pg_database, concurrency=2)
    init_db(settings)
    executor = EmbeddedExecutor(settings)
    executor.start()
    try:
        ids = [
            submit_job(settings, executor, "ping", {"seconds": 1.5, "nonce": f"restart-{i}"})[0]["id"] for i in range(3)
        ]  # two run, one waits in the queue
        wait_until(lambda: store.get(settings, ids[0])["progress"] > 0, 60, "the first job to be under way")
        postgres_server.restart()  # `fast`: every connection of the server and of the pool processes is cut
        jobs = [
            wait_until(lambda i=i: (j := store.get(settings, i))["state"] in FINISHED and j, 90, f"job {i}")
            for i in ids
        ]
    finally:
        executor.stop()
    assert [j["state"] for j in jobs] == ["succeeded"] * 3, jobs
    assert [j["attempts"] for j in jobs] == [1] * 3  # each ran once: nobody took a live job for dead


class _StopParams(BaseModel):
    back_after: float | None = None  # seconds until PostgreSQL is started again (None: the test does it)
    nonce: str = ""


@pytest.fixture
def stops_the_database(monkeypatch, postgres_server):
    """A job kind whose first attempt stops PostgreSQL just before its end is recorded; -> the timers started."""
    timers: list[threading.Timer] = []

    def run(ctx: TaskContext) -> dict[str, Any]:
        params = _StopParams.model_validate(ctx.params)
        if ctx.attempt == 1:
            postgres_server.stop()
            if params.back_after is not None:
                timers.append(threading.Timer(params.back_after, postgres_server.start))
                timers[-1].start()
        return {"attempt": ctx.attempt}

    task = Task(_StopParams, lambda p, s: (p.model_dump(), ""), run, "stop the database, then end")
    monkeypatch.setitem(registry.TASKS, "stop-db", task)
    yield timers
    for timer in timers:
        timer.join()


def test_a_final_write_is_retried_until_the_database_is_back(pg_database, stops_the_database, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=pg_database, job_stale_seconds=60)
    init_db(settings)
    job, _ = submit_job(settings, None, "stop-db", {"back_after": 1.0})
    assert execute(job["id"], settings).status == "succeeded"  # the runner waited for the database
    job = store.get(settings, job["id"])
    assert job["state"] == "succeeded" and job["attempts"] == 1 and job["outputs"] == {"attempt": 1}


def test_a_final_write_lost_to_an_outage_longer_than_the_lease_is_taken_over(
    pg_database, postgres_server, stops_the_database, tmp_path
):
    settings = Settings(data_dir=tmp_path, database_url=pg_database, job_stale_seconds=1.5)
    init_db(settings)
    job, _ = submit_job(settings, None, "stop-db", {"nonce": "long outage"})
    assert execute(job["id"], settings).status == "skipped"  # gave up once its lease had run out
    postgres_server.start()
    assert store.get(settings, job["id"])["state"] == "running"  # its end was never recorded ...
    assert store.requeue_dead(settings) == [job["id"]]  # ... and the first sweep after the outage takes it over
    assert execute(job["id"], settings).status == "succeeded"
    job = store.get(settings, job["id"])
    assert job["state"] == "succeeded" and job["attempts"] == 2 and job["outputs"] == {"attempt": 2}
