"""The hostile corpus (tests/hostile.py) through every way in (issue 13): the CLI, `POST /images` (and the
job it starts), `/resize`, `/process` and the tile URLs of what was accepted, on a real `tilewright serve`.

Every file ends in a clear answer: a 4xx JSON error or a finished job (failed with a reason, or
succeeded for the files that are fine under a wrong name), a CLI exit code with one line on stderr;
never a 5xx, a traceback, a crash of the server or a hang (each request has a time limit). Afterwards
nothing is left half-written in uploads or work, and `/healthz` and `/readyz` answer 200.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from hostile import make_corpus
from services import TILEWRIGHT, clean_env, free_port, start_server, wait_until
from tilewright.jobs.models import FINISHED

LIMIT = 90  # seconds: a request or command past this is a hang


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, testdata) -> list[Path]:
    return make_corpus(tmp_path_factory.mktemp("hostile"), testdata)


@pytest.fixture(scope="module")
def server(tmp_path_factory, corpus):
    data = tmp_path_factory.mktemp("hostile-server") / "data"
    port = free_port()
    env = clean_env(
        TILEWRIGHT_DATA_DIR=str(data),
        TILEWRIGHT_INPUT_ROOTS=f'["{corpus[0].parent}"]',
        TILEWRIGHT_CONCURRENCY="2",
    )
    process = start_server(env, port, data.parent / "serve.log")
    try:
        yield httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=LIMIT), data, process
    finally:
        process.stop()


def _clean_error(answer: httpx.Response, name: str) -> None:
    assert answer.status_code < 500, (name, answer.status_code, answer.text[:300])
    if answer.status_code >= 400:
        body = answer.json()
        assert body["error"] and body["detail"] and "Traceback" not in answer.text, (name, body)


def test_the_cli_gives_one_line_and_an_exit_code_for_every_file(corpus, tmp_path):
    def run(path: Path) -> tuple[Path, subprocess.CompletedProcess]:
        out = tmp_path / path.name
        args = [TILEWRIGHT, "convert", str(path), "-o", str(out)]
        env = clean_env(TILEWRIGHT_DATA_DIR=str(tmp_path / "data"))
        return path, subprocess.run(args, capture_output=True, text=True, timeout=LIMIT, env=env)

    with ThreadPoolExecutor(2) as pool:
        for path, done in pool.map(run, corpus):
            assert done.returncode in (0, 1, 2, 3, 4), (path.name, done.returncode, done.stderr[-500:])
            assert "Traceback" not in done.stderr, (path.name, done.stderr[-800:])
            if done.returncode:
                lines = done.stderr.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("tilewright:"), (path.name, done.stderr[-500:])


def test_every_file_through_the_http_ways_in_ends_cleanly(server, corpus):
    client, data, process = server
    accepted = {}
    for path in corpus:
        payload = path.read_bytes()
        upload = client.post("/images", params={"filename": path.name}, content=payload)
        _clean_error(upload, path.name)
        if upload.status_code < 300:
            accepted[path.name] = upload.json()
        _clean_error(client.post("/resize", params={"width": 64}, content=payload), path.name)
        chain = {"images": [{"input": str(path), "output": f"{path.stem}.png"}], "operations": ["resize=0.1"]}
        _clean_error(client.post("/process", json=chain), path.name)
        assert process.proc.poll() is None, f"the server died on {path.name}: {process.output()[-2000:]}"
    assert accepted, "some files of the corpus are fine under their name or content"
    for name, answer in accepted.items():
        image, job_id = answer["image"], answer["job"]["id"]
        job = wait_until(
            lambda job_id=job_id: (j := client.get(f"/jobs/{job_id}").json())["state"] in FINISHED and j,
            LIMIT,
            f"the job of {name}",
        )
        assert job["state"] in ("succeeded", "failed"), (name, job)
        if job["state"] == "failed":
            assert job["error"] and "Traceback" not in job["error"], (name, job)
        for url in (f"/images/{image['id']}.dzi", f"/iiif/3/{image['id']}/info.json", f"/images/{image['id']}/info"):
            _clean_error(client.get(url), f"{name} {url}")
        _clean_error(client.get(f"/iiif/3/{image['id']}/full/256,/0/default.jpg"), name)
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    left = [p for p in data.rglob("*") if p.name.startswith((".incoming-", ".tmp-", ".staging-"))]
    assert left == [], left
    work = data / "work"
    assert not work.exists() or not any(p.is_file() for p in work.rglob("*")), list(work.rglob("*"))[:10]
