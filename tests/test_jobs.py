"""The job system with the embedded executor: a real spawn process pool, real conversions, on a real
SQLite file and on a real PostgreSQL database (each test runs on both); and a real `tilewright serve`
killed with SIGKILL mid-job and started again."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest

from conftest import TESTDATA
from services import FINISHED, clean_env, free_port, start_server, wait_until
from tilewright.config import Settings
from tilewright.db import dispose_engine, init_db
from tilewright.errors import InputError
from tilewright.jobs import store
from tilewright.jobs.executors import EmbeddedExecutor
from tilewright.jobs.registry import prepare
from tilewright.jobs.service import submit_job
from tilewright.jobs.view import Relative, retryable
from tilewright.storage.manifest import file_sha256


def _database(request) -> str:
    """The job database of this parameter: "" (SQLite in the data folder) or a fresh PostgreSQL database."""
    return "" if request.param == "sqlite" else request.getfixturevalue("postgres_server").database()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request, tmp_path_factory):
    """Settings on a fresh data folder and job database, and a started embedded executor with concurrency 2."""
    data = tmp_path_factory.mktemp("jobs")
    settings = Settings(
        data_dir=data,
        database_url=_database(request),
        input_roots=[str(TESTDATA), str(data / "in")],
        concurrency=2,
        job_retry_backoff_seconds=0.1,
    )
    init_db(settings)
    executor = EmbeddedExecutor(settings)
    executor.start()
    yield settings, executor
    executor.stop()
    dispose_engine(settings.resolved_database_url())


def _wait(settings, job_id: str, timeout: float = 60) -> dict:
    return wait_until(
        lambda: (j := store.get(settings, job_id))["state"] in FINISHED and j, timeout, f"job {job_id} to finish"
    )


def test_twenty_conversions_with_concurrency_two(env, testdata):
    settings, executor = env
    source = testdata("svs/cmu-1-small-region.svs")
    ids = [
        submit_job(settings, executor, "convert", {"input": str(source), "collection": "twenty"}, key=f"twenty-{i}")[0][
            "id"
        ]
        for i in range(20)
    ]
    assert len(set(ids)) == 20
    jobs = [_wait(settings, i, timeout=120) for i in ids]
    assert [j["state"] for j in jobs] == ["succeeded"] * 20, [j["error"] for j in jobs]
    for job in jobs:
        assert job["attempts"] == 1
        assert Path(job["outputs"]["output"]).is_file() and job["outputs"]["output"].endswith("slide.dzi")
        assert job["outputs"]["width"] == 2220
    # never more than two at once: count overlapping [started, finished] intervals
    spans = sorted((j["started_at"], j["finished_at"]) for j in jobs)
    peak = max(sum(1 for s, f in spans if s <= start < f) for start, _ in spans)
    assert peak <= 2
    assert not any(settings.work_root().iterdir()), "work directories must be removed when jobs end"


def test_same_key_twice_runs_once(env, testdata):
    settings, executor = env
    params = {"input": str(testdata("jpeg-png/boxes.png")), "kind": "tiff", "collection": "once"}
    first, created = submit_job(settings, executor, "convert", params)
    second, created_again = submit_job(settings, executor, "convert", dict(params))
    assert created and not created_again and first["id"] == second["id"]
    job = _wait(settings, first["id"])
    assert job["state"] == "succeeded" and job["attempts"] == 1
    third, created_third = submit_job(settings, executor, "convert", params)
    assert not created_third and third["id"] == first["id"] and third["state"] == "succeeded"
    assert len(store.list_jobs(settings, kind="convert", limit=1000)) == len(
        {j["id"] for j in store.list_jobs(settings, kind="convert", limit=1000)}
    )


def test_corrupt_input_fails_once_with_its_reason(env, testdata):
    settings, executor = env
    job, _ = submit_job(settings, executor, "convert", {"input": str(testdata("broken/truncated.png"))})
    job = _wait(settings, job["id"])
    assert job["state"] == "failed" and job["attempts"] == 1
    assert "corrupt or truncated" in job["error"] and job["error_type"] == "InputError"
    assert not retryable(job)  # the same input fails the same way: the page offers no Retry


def test_transient_failures_retry_with_backoff_then_give_up(env):
    settings, executor = env
    ok, _ = submit_job(settings, executor, "ping", {"fail_attempts": 2, "nonce": "retry-ok"})
    bad, _ = submit_job(settings, executor, "ping", {"fail_attempts": 9, "nonce": "retry-bad"})
    ok, bad = _wait(settings, ok["id"]), _wait(settings, bad["id"])
    assert ok["state"] == "succeeded" and ok["attempts"] == 3 and ok["error"] is None
    assert bad["state"] == "failed" and bad["attempts"] == settings.job_max_attempts
    assert "gave up after 3 attempts" in bad["error"]
    assert retryable(bad)  # a transient failure: a retry may succeed, the page offers it


def test_relative_shows_paths_under_a_root_relative_to_it(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", input_roots=[tmp_path / "in", tmp_path / "in" / "deep"])
    uploads, outputs = settings.resolved_upload_dir(), settings.resolved_output_root()
    relative = Relative(settings)
    job = {
        "params": {"input": f"{uploads}/ID/a b.svs", "deep": f"{tmp_path}/in/deep/x.png", "n": 3},
        "outputs": {"output": str(outputs), "paths": [f"{outputs}/c/ID/slide.dzi"], "ok": True},
        "error": f"{tmp_path}/in/x.jpg: image data is corrupt or truncated ('{uploads}/ID')",
        "kept": [f"file://{outputs}/c", f"/elsewhere{outputs}/c", f"{uploads}2/x", None],
    }
    assert relative.value(job) == {
        "params": {"input": "ID/a b.svs", "deep": "x.png", "n": 3},
        "outputs": {"output": ".", "paths": ["c/ID/slide.dzi"], "ok": True},
        "error": "x.jpg: image data is corrupt or truncated ('ID')",
        "kept": job["kept"],
    }


def test_cancel_a_running_job(env):
    settings, executor = env
    job, _ = submit_job(settings, executor, "ping", {"seconds": 60, "nonce": "cancel"})
    wait_until(lambda: store.get(settings, job["id"])["progress"] > 0, 30, "the job to report progress")
    store.cancel(settings, job["id"])
    job = _wait(settings, job["id"], timeout=10)
    assert job["state"] == "cancelled" and retryable(job)


def test_input_outside_the_roots_is_refused(env, tmp_path):
    settings, executor = env
    outside = tmp_path / "x.png"
    outside.write_bytes(b"not used")
    with pytest.raises(InputError, match="outside the configured input roots"):
        submit_job(settings, executor, "convert", {"input": str(outside)})
    with pytest.raises(InputError, match="outside"):
        submit_job(settings, executor, "convert", {"input": f"{TESTDATA}/../../../etc/passwd"})
    with pytest.raises(InputError, match="unknown job kind"):
        submit_job(settings, executor, "nope", {})


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request):
    url = _database(request)
    yield url
    if url:
        dispose_engine(url)


def test_server_killed_mid_job_completes_after_restart(tmp_path, slow_tiff, database):
    """SIGKILL `tilewright serve` while it converts; the next start picks the job up and finishes it (at once:
    its dead pool process was in this machine's pid namespace, no lease to wait for)."""
    port = free_port()
    env = clean_env(
        TILEWRIGHT_DATA_DIR=str(tmp_path / "data"),
        TILEWRIGHT_DATABASE_URL=database,
        TILEWRIGHT_INPUT_ROOTS=f'["{slow_tiff.parent}"]',
        TILEWRIGHT_CONCURRENCY="1",
    )
    base = f"http://127.0.0.1:{port}"
    server = start_server(env, port, tmp_path / "serve1.log")
    try:
        job = httpx.post(f"{base}/jobs", json={"kind": "convert", "params": {"input": str(slow_tiff)}}).json()
        wait_until(
            lambda: httpx.get(f"{base}/jobs/{job['id']}").json()["progress"] > 0.1, 60, "the conversion to be under way"
        )
    finally:
        server.kill(group=False)  # only the server process: its pool children must die with it
    settings = Settings(data_dir=tmp_path / "data", database_url=database)
    assert store.get(settings, job["id"])["state"] == "running"
    time.sleep(0.2)
    server = start_server(env, port, tmp_path / "serve2.log")
    try:
        done = wait_until(
            lambda: (j := httpx.get(f"{base}/jobs/{job['id']}").json())["state"] in FINISHED and j,
            120,
            "the job to finish after the restart",
        )
        assert done["state"] == "succeeded", done
        assert done["attempts"] == 2
        assert (settings.resolved_output_root() / done["outputs"]["output"]).is_file()  # shown relative
        assert httpx.get(base + done["outputs"]["urls"][-1]).status_code == 200
        assert not any((tmp_path / "data" / "work").iterdir()), "the dead attempt's work directory is removed"
    finally:
        server.stop()


def test_a_convert_key_hashes_the_parameters_as_sent(env, tmp_path):
    # the CLI and query strings send "256", not 256: the key (and the recorded parameters) hash what was sent,
    # as before the kinds had models, so a job submitted then is found again, not run twice
    settings, _executor = env
    source = TESTDATA / "generic-tiff" / "boxes.tiff"
    sent = {"input": str(source), "tile_size": "256", "quality": "90", "base_only": "yes"}
    clean, key = prepare("convert", sent, settings)
    assert clean == {**sent, "input": str(source.resolve()), "kind": "dzi", "collection": "default"}
    material = file_sha256(source.resolve())
    digest = hashlib.sha256(f"convert\0{json.dumps(clean, sort_keys=True, default=str)}\0{material}".encode())
    assert key == digest.hexdigest()
    with pytest.raises(InputError, match="convert option tile_size must be between 16 and 8192, not 5"):
        prepare("convert", {**sent, "tile_size": "5"}, settings)
    with pytest.raises(InputError, match="unknown tile_format 'gif'"):
        prepare("convert", {**sent, "tile_format": "gif"}, settings)
