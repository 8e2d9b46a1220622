"""The Celery executor for real, on both brokers: a private redis-server and a private RabbitMQ node, real
`tilewright worker` subprocesses, the same job database. Jobs run there, progress reaches the record, a
worker SIGKILLed mid-job loses nothing, a broker outage loses nothing and everything recovers on its own,
a job longer than RabbitMQ's consumer_timeout ends well, and /readyz says which part is down."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import TESTDATA
from rabbit_services import CONSUMER_TIMEOUT_MS
from services import TILEWRIGHT, RedisServer, clean_env, finished, free_port, start_worker, wait_until
from tilewright.config import Settings
from tilewright.db import init_db
from tilewright.errors import ConfigError
from tilewright.jobs import store
from tilewright.jobs.celery_app import make_celery
from tilewright.jobs.celery_executor import CeleryExecutor
from tilewright.jobs.executors import BrokerUnavailableError, FallbackExecutor, make_executor
from tilewright.server import create_app

VISIBILITY = 6  # seconds before Redis hands a message taken but not started by a dead worker to another
FAST = {"celery_recovery_interval": 0.5, "celery_resend_seconds": 2.0}  # the server's recovery loop, sped up


def _settings(data: Path, broker: str, roots: list[str], **extra: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data,
        "executor": "celery",
        "broker_url": broker,
        "input_roots": roots,
        "celery_visibility_timeout": VISIBILITY,
        "job_retry_backoff_seconds": 0.2,
        "broker_fallback": False,
        **FAST,
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


def _worker_env(data: Path, broker: str, roots: list[str]) -> dict[str, str]:
    return clean_env(
        TILEWRIGHT_DATA_DIR=str(data),
        TILEWRIGHT_EXECUTOR="celery",
        TILEWRIGHT_BROKER_URL=broker,
        TILEWRIGHT_INPUT_ROOTS=repr(roots).replace("'", '"'),
        TILEWRIGHT_CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY),
        TILEWRIGHT_JOB_RETRY_BACKOFF_SECONDS="0.2",
    )


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request) -> str:
    """The session's broker URL, once Redis and once RabbitMQ."""
    return request.getfixturevalue(f"{request.param}_server")


def _ready(client: TestClient) -> dict:
    return wait_until(lambda: (r := client.get("/readyz")).status_code == 200 and r.json(), 30, "/readyz 200")


def test_jobs_run_on_a_celery_worker(broker, tmp_path, testdata):
    roots = [str(TESTDATA)]
    settings = _settings(tmp_path / "data", broker, roots)
    worker = None
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/readyz").json()["checks"]["queue"]["executor"] == "celery"
        worker = start_worker(_worker_env(tmp_path / "data", broker, roots), tmp_path / "w.log", "w1", concurrency=2)
        try:
            checks = _ready(client)["checks"]  # a worker answers the ping: ready
            assert checks["broker"]["ok"] and checks["workers"]["count"] == 1, checks
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
        # every worker gone: not ready, and /readyz says so (within the monitor's interval)
        gone = wait_until(
            lambda: (r := client.get("/readyz")).status_code == 503 and r.json(), 30, "/readyz 503 without workers"
        )
        assert gone["checks"]["broker"]["ok"] and not gone["checks"]["workers"]["ok"], gone
        assert "no worker answered" in gone["checks"]["workers"]["detail"]


def test_worker_killed_mid_job_another_finishes_it_exactly_once(broker, tmp_path, slow_tiff):
    roots = [str(slow_tiff.parent)]
    data = tmp_path / "data"
    settings = _settings(data, broker, roots)
    env = _worker_env(data, broker, roots)
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
        second = start_worker(env, tmp_path / "w2.log", "w2")
        try:
            done = finished(client, job["id"], 90)  # the server requeued it (owner dead) and sent it again
            assert done["state"] == "succeeded", (done, second.output())
            assert done["attempts"] == 2
            assert (settings.resolved_output_root() / done["outputs"]["output"]).is_file()  # shown relative
            # exactly once: no further run starts or rewrites the record once it succeeded
            time.sleep(2 * FAST["celery_recovery_interval"])
            again = client.get(f"/jobs/{job['id']}").json()
            assert again["finished_at"] == done["finished_at"] and again["attempts"] == 2
            assert store.counts_by_state(settings)["running"] == 0
        finally:
            second.stop()
        assert not any((data / "work").iterdir()), "work directories must be removed"


class _Outage:
    """Takes a broker away and brings it back: a private redis-server (SIGKILLed: it saves nothing, so its
    queued messages are lost) or the session's RabbitMQ node (its application stopped and started)."""

    def __init__(self, kind: str, request, folder: Path) -> None:
        self.kind = kind
        if kind == "redis":
            self.redis = RedisServer(folder)
            self.redis.start()
            self.url = self.redis.url
        else:
            self.rabbit = request.getfixturevalue("rabbitmq")
            self.url = self.rabbit.vhost()

    def down(self) -> None:
        if self.kind == "redis":
            self.redis.kill()
        else:
            self.rabbit.stop_app()

    def up(self) -> None:
        if self.kind == "redis":
            self.redis.start()
        else:
            self.rabbit.start_app()

    def close(self) -> None:
        if self.kind == "redis":
            self.redis.stop()


@pytest.fixture(params=["redis", "rabbitmq"])
def outage(request, tmp_path):
    out = _Outage(request.param, request, tmp_path)
    try:
        yield out
    finally:
        out.close()


def test_broker_outage_loses_nothing_and_everything_recovers(outage, tmp_path):
    data = tmp_path / "data"
    settings = _settings(data, outage.url, [])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        worker = start_worker(_worker_env(data, outage.url, []), tmp_path / "w.log", "w1", concurrency=1)
        try:
            _ready(client)
            busy = client.post("/jobs", json={"kind": "ping", "params": {"seconds": 3}}).json()
            wait_until(lambda: client.get(f"/jobs/{busy['id']}").json()["state"] == "running", 30, "the busy job")
            waiting = client.post("/jobs", json={"kind": "ping", "params": {"nonce": "waiting"}}).json()
            outage.down()  # Redis loses `waiting`'s message; RabbitMQ keeps it
            answer = client.post("/jobs", json={"kind": "ping", "params": {"nonce": "during"}})
            assert answer.status_code == 201 and answer.json()["state"] == "queued"  # recorded; sent later
            during = answer.json()
            started = time.monotonic()
            down = client.get("/readyz")
            assert time.monotonic() - started < 2.0  # cached checks: no waiting on the dead broker
            assert down.status_code == 503 and not down.json()["checks"]["broker"]["ok"], down.json()
            assert "unreachable" in down.json()["checks"]["broker"]["detail"]
            outage.up()
            jobs = [finished(client, j["id"], 60) for j in (busy, waiting, during)]
            assert [j["state"] for j in jobs] == ["succeeded"] * 3, worker.output()
            assert [j["attempts"] for j in jobs] == [1, 1, 1]  # each ran exactly once
            assert worker.proc.poll() is None  # the worker reconnected on its own
            _ready(client)
        finally:
            worker.stop()


def test_job_longer_than_rabbitmq_consumer_timeout(rabbitmq, tmp_path):
    """The node's consumer_timeout is CONSUMER_TIMEOUT_MS: a job three times as long, with another waiting
    behind it in the same worker, both end once, and the worker is still the one that started."""
    url = rabbitmq.vhost()
    data = tmp_path / "data"
    settings = _settings(data, url, [])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        worker = start_worker(_worker_env(data, url, []), tmp_path / "w.log", "w1", concurrency=1)
        try:
            long_job = client.post(
                "/jobs", json={"kind": "ping", "params": {"seconds": 3 * CONSUMER_TIMEOUT_MS / 1000}}
            )
            behind = client.post("/jobs", json={"kind": "ping", "params": {"nonce": "behind"}})
            jobs = [finished(client, r.json()["id"], 90) for r in (long_job, behind)]
            assert [j["state"] for j in jobs] == ["succeeded"] * 2, worker.output()
            assert [j["attempts"] for j in jobs] == [1, 1]
            assert worker.proc.poll() is None, worker.output()
        finally:
            worker.stop()


def test_unreachable_broker_falls_back_loudly_then_goes_back_to_celery(tmp_path, capsys):
    redis = RedisServer(tmp_path)  # not started yet: the broker is down when the server starts
    settings = Settings(data_dir=tmp_path / "data", executor="celery", broker_url=redis.url, **FAST)
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            assert "FALLING BACK TO THE EMBEDDED EXECUTOR" in capsys.readouterr().err
            assert isinstance(client.app.state.executor, FallbackExecutor)  # type: ignore[attr-defined]
            assert client.get("/readyz").json()["checks"]["queue"]["executor"] == "embedded"
            job = client.post("/jobs", json={"kind": "ping", "params": {}}).json()
            assert finished(client, job["id"], 30)["state"] == "succeeded"  # embedded meanwhile
            redis.start()
            back = wait_until(
                lambda: (r := client.get("/readyz").json())["checks"]["queue"]["executor"] == "celery" and r,
                30,
                "the server to go back to Celery",
            )
            assert not back["ready"] and not back["checks"]["workers"]["ok"]  # no worker yet: not ready
    finally:
        redis.stop()
    strict = Settings(data_dir=tmp_path, executor="celery", broker_url=redis.url, broker_fallback=False)
    with pytest.raises(BrokerUnavailableError, match="unreachable"):
        make_executor(strict)


def test_celery_executor_is_chosen_when_the_broker_answers(broker, tmp_path):
    settings = Settings(data_dir=tmp_path, executor="celery", broker_url=broker)
    init_db(settings)
    executor = make_executor(settings)
    assert isinstance(executor, CeleryExecutor)
    executor.tick()
    assert executor.checks()["broker"]["ok"]
    executor.stop()


def test_no_result_backend_unless_one_is_named(rabbitmq_server, tmp_path):
    app = make_celery(Settings(data_dir=tmp_path, executor="celery", broker_url=rabbitmq_server))
    assert type(app.backend).__name__ == "DisabledBackend"  # not the broker URL (Celery has no amqp backend)
    named = make_celery(
        Settings(data_dir=tmp_path, executor="celery", broker_url=rabbitmq_server, result_backend="rpc://")
    )
    assert type(named.backend).__name__ == "RPCBackend"
    broken = Settings(data_dir=tmp_path, executor="celery", result_backend="mongodb://127.0.0.1/results")
    with pytest.raises(ConfigError, match="TILEWRIGHT_RESULT_BACKEND"):
        create_app(broken)  # at start-up, not at the first submit


def test_serve_refuses_a_result_backend_celery_cannot_load(tmp_path):
    env = clean_env(
        TILEWRIGHT_DATA_DIR=str(tmp_path),
        TILEWRIGHT_EXECUTOR="celery",
        TILEWRIGHT_RESULT_BACKEND="mongodb://127.0.0.1/results",
    )
    done = subprocess.run(
        [TILEWRIGHT, "serve", "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("tilewright: error: TILEWRIGHT_RESULT_BACKEND") and "Traceback" not in done.stderr
