"""`tilewright watch`: polling local folders and Azurite, a persistent cursor, one job per blob version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading

from services import TILEWRIGHT, clean_env
from tilewright.config import Settings
from tilewright.db import init_db
from tilewright.events import submit as blob_tasks
from tilewright.events import watch as watcher
from tilewright.events.watch import cursor_path, poll, watch
from tilewright.jobs import store as jobs
from tilewright.jobs.runner import execute


def test_watch_local_folder_cli_cursor_and_changed_file(tmp_path, testdata):
    root = tmp_path / "storage"
    (root / "inbox").mkdir(parents=True)
    shutil.copy(testdata("svs/cmu-1-small-region.svs"), root / "inbox" / "a.svs")
    (root / "inbox" / "notes.txt").write_text("not a slide")
    env = clean_env(TILEWRIGHT_DATA_DIR=str(tmp_path / "data"), TILEWRIGHT_STORAGE_ROOT=str(root))

    def run_once():
        result = subprocess.run(
            [TILEWRIGHT, "watch", str(root / "inbox"), "--once"], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stderr.strip().splitlines()[-1]), result.stdout

    first, out = run_once()
    assert first["submitted"] == 1 and first["ignored"] == 1 and "file://" in out
    second, _ = run_once()  # the cursor remembers: nothing new
    assert second.get("submitted", 0) == 0 and second.get("duplicate", 0) == 0
    os.utime(root / "inbox" / "a.svs", ns=(1, 1))  # a changed file (new etag) is a new job
    third, _ = run_once()
    assert third["submitted"] == 1
    settings = Settings(data_dir=tmp_path / "data", storage_root=root)
    job_ids = [j["id"] for j in jobs.list_jobs(settings, kind="convert_blob")]
    assert len(job_ids) == 2
    assert execute(job_ids[0], settings).status == "succeeded"
    job = jobs.get(settings, job_ids[0])
    manifest = root / "inbox" / "web-slides-dzi-output" / "a" / "manifest.json"
    assert job["outputs"]["manifest"] == f"file://{manifest}" and manifest.exists()
    fourth, _ = run_once()  # our own output folder is never a source
    assert fourth.get("submitted", 0) == 0


def test_a_poll_opens_its_store_once_and_filters_each_blob_once(tmp_path, monkeypatch):
    root = tmp_path / "storage"
    (root / "inbox").mkdir(parents=True)
    for name in ("a.svs", "b.svs", "notes.txt"):
        (root / "inbox" / name).write_bytes(b"not read at submission")
    settings = Settings(data_dir=tmp_path / "data", storage_root=root)
    init_db(settings)
    calls = {"open_url": 0, "accept": 0, "accept at submission": 0}

    def counted(name, function):
        def call(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(watcher, "open_url", counted("open_url", watcher.open_url))
    monkeypatch.setattr(watcher, "accept", counted("accept", watcher.accept))
    monkeypatch.setattr(blob_tasks, "accept", counted("accept at submission", blob_tasks.accept))
    seen: dict[str, str] = {}
    counts = poll(str(root / "inbox"), settings, None, seen)
    assert counts == {"listed": 3, "submitted": 2, "duplicate": 0, "ignored": 1, "failed": 0}
    assert calls == {"open_url": 1, "accept": 3, "accept at submission": 0}
    assert set(seen) == {"inbox/a.svs", "inbox/b.svs", "inbox/notes.txt"}
    sources = {j["params"]["source"] for j in jobs.list_jobs(settings, kind="convert_blob")}
    assert sources == {(root / "inbox" / name).as_uri() for name in ("a.svs", "b.svs")}


def test_watch_azurite_container_with_a_thread_and_cursor(tmp_path, azurite, testdata):
    settings = Settings(
        data_dir=tmp_path,
        azure_connection_string=azurite.connection_string,
        event_sources=[{"container": "watched", "prefix": "in/", "suffixes": [".svs"]}],
    )
    init_db(settings)
    container = azurite.service().get_container_client("watched")
    container.create_container()
    with open(testdata("svs/cmu-1-small-region.svs"), "rb") as handle:
        container.upload_blob("in/one.svs", handle)
    container.upload_blob("other/two.svs", b"not under the prefix")
    stop = threading.Event()
    lines: list[str] = []
    totals: dict = {}
    thread = threading.Thread(
        target=lambda: totals.update(watch("az://watched", settings, interval=0.2, stop=stop, echo=lines.append))
    )
    thread.start()
    try:
        from services import wait_until

        wait_until(lambda: len(jobs.list_jobs(settings, kind="convert_blob")) == 1, 30, "the first job")
        container.upload_blob("in/three.svs", b"another version-less slide")
        wait_until(lambda: len(jobs.list_jobs(settings, kind="convert_blob")) == 2, 30, "the second job")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert totals["submitted"] == 2 and totals["ignored"] >= 1
    cursor = json.loads(cursor_path("az://watched", settings).read_text())
    assert set(cursor["seen"]) >= {"watched/in/one.svs", "watched/in/three.svs"}
    again = watch("az://watched", settings, once=True)  # a restarted watcher submits nothing old
    assert again.get("submitted", 0) == 0
    newest = jobs.list_jobs(settings, kind="convert_blob")[-1]
    assert newest["params"]["source"] == "az://watched/in/one.svs"
    assert execute(newest["id"], settings).status == "succeeded"
    assert (
        jobs.get(settings, newest["id"])["outputs"]["manifest"]
        == "az://watched/web-slides-dzi-output/one/manifest.json"
    )
