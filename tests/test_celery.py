"""The Celery executor for real: a private redis-server, real `tilewright worker` subprocesses, the same
job database. Jobs run there, progress reaches the record, a worker SIGKILLed mid-job loses nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import TESTDATA
from services import clean_env, finished, start_worker, wait_until
from tilewright.config import Settings
from tilewright.jobs import store
from tilewright.jobs.executors import BrokerUnavailableError, CeleryExecutor, EmbeddedExecutor, make_executor
from tilewright.server import create_app

VISIBILITY = 6  # seconds before Redis hands a dead worker's job to another worker


def _settings(data: Path, broker: str, roots: list[str]) -> Settings:
    return Settings(
        data_dir=data,
        executor="celery",
        broker_url=broker,
        input_roots=roots,
        celery_visibility_timeout=VISIBILITY,
        job_retry_backoff_seconds=0.2,
        broker_fallback=False,
    )


def _worker_env(data: Path, broker: str, roots: list[str]) -> dict[str, str]:
    return clean_env(
        TILEWRIGHT_DATA_DIR=str(data),
        TILEWRIGHT_EXECUTOR="celery",
        TILEWRIGHT_BROKER_URL=broker,
        TILEWRIGHT_INPUT_ROOTS=repr(roots).replace("'", '"'),
        TILEWRIGHT_CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY),
        TILEWRIGHT_JOB_RETRY_BACKOFF_SECONDS="0.2",
    )


def test_jobs_run_on_a_celery_worker(redis_server, tmp_path, testdata):
    roots = [str(TESTDATA)]
    settings = _settings(tmp_path / "data", redis_server, roots)
    worker = None
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/readyz").json()["checks"]["queue"]["executor"] == "celery"
        worker = start_worker(
            _worker_env(tmp_path / "data", redis_server, roots), tmp_path / "w.log", "w1", concurrency=2
        )
        try:
            source = testdata("svs/cmu-1-small-region.svs")
            ids = [
                client.post(
                    "/jobs",
                    json={"kind": "convert", "params": {"input": str(source)}},
                    headers={"Idempotency-Key": f"c{i}"},
                ).json()["id"]
                for i in range(4)
            ]
            ids.append(client.post("/jobs", json={"kind": "ping", "params": {"fail_attempts": 1}}).json()["id"])
            bad = client.post(
                "/jobs", json={"kind": "convert", "params": {"input": str(testdata("broken/truncated.png"))}}
            ).json()
            jobs = [finished(client, i, 60) for i in ids + [bad["id"]]]
            assert [j["state"] for j in jobs] == ["succeeded"] * 5 + ["failed"], worker.output()
            assert jobs[4]["attempts"] == 2  # the transient failure was retried through the broker
            assert jobs[5]["attempts"] == 1 and "corrupt" in jobs[5]["error"]
            output_root = settings.resolved_output_root()  # the API shows outputs relative to it
            assert all((output_root / j["outputs"]["output"]).is_file() for j in jobs[:4])
        finally:
            worker.stop()


def test_worker_killed_mid_job_another_finishes_it_exactly_once(redis_server, tmp_path, slow_tiff):
    roots = [str(slow_tiff.parent)]
    data = tmp_path / "data"
    settings = _settings(data, redis_server, roots)
    env = _worker_env(data, redis_server, roots)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        first = start_worker(env, tmp_path / "w1.log", "w1")
        try:
            job = client.post("/jobs", json={"kind": "convert", "params": {"input": str(slow_tiff)}}).json()
            seen = wait_until(
                lambda: (j := client.get(f"/jobs/{job['id']}").json())["progress"] > 0.1 and j,
                60,
                "progress from the worker to reach the job record",
            )
            assert seen["state"] == "running" and seen["stage"] == "write"
        finally:
            first.kill()  # SIGKILL the worker and its pool children
        assert client.get(f"/jobs/{job['id']}").json()["state"] == "running"
        second = start_worker(env, tmp_path / "w2.log", "w2")
        try:
            done = finished(client, job["id"], 90)
            assert done["state"] == "succeeded", (done, second.output())
            assert done["attempts"] == 2
            assert (settings.resolved_output_root() / done["outputs"]["output"]).is_file()  # shown relative
            # exactly once: no further run starts or rewrites the record once it succeeded
            again = client.get(f"/jobs/{job['id']}").json()
            assert again["finished_at"] == done["finished_at"] and again["attempts"] == 2
            assert store.counts_by_state(settings)["running"] == 0
        finally:
            second.stop()
        assert not any((data / "work").iterdir()), "work directories must be removed"


def test_unreachable_broker_falls_back_loudly_or_refuses(tmp_path, capsys):
    from services import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    fallback = Settings(data_dir=tmp_path, executor="celery", broker_url=url, broker_fallback=True)
    assert isinstance(make_executor(fallback), EmbeddedExecutor)
    assert "FALLING BACK TO THE EMBEDDED EXECUTOR" in capsys.readouterr().err
    strict = Settings(data_dir=tmp_path, executor="celery", broker_url=url, broker_fallback=False)
    with pytest.raises(BrokerUnavailableError, match="unreachable"):
        make_executor(strict)


def test_celery_executor_is_chosen_when_the_broker_answers(redis_server, tmp_path):
    settings = Settings(data_dir=tmp_path, executor="celery", broker_url=redis_server)
    executor = make_executor(settings)
    assert isinstance(executor, CeleryExecutor) and executor.ready()[0]
    executor.stop()
