"""The storage conformance suite, run against every backend: local disk, Azurite (Azure Blob Storage),
moto's S3 server. Plus URL rules and the streamed 1 GB transfer memory bound (a child process's peak RSS)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tilewright.config import Settings
from tilewright.errors import CancelledError, InputError, LimitExceededError, OutsideRootsError
from tilewright.storage import MANIFEST, BlobNotFoundError, StorageError, open_url


@pytest.fixture(params=["local", "azurite", "moto"])
def store(request, tmp_path):
    """(store, container) for one backend; each test gets a fresh container/bucket."""
    container = f"c{uuid.uuid4().hex[:12]}"
    if request.param == "local":
        settings = Settings(data_dir=tmp_path, storage_root=tmp_path / "root", storage_retries=2)
        url = f"file://{tmp_path / 'root'}"
    elif request.param == "azurite":
        server = request.getfixturevalue("azurite")
        settings = Settings(data_dir=tmp_path, azure_connection_string=server.connection_string, storage_retries=2)
        url = f"az://{container}"
    else:
        server = request.getfixturevalue("moto_s3")
        settings = Settings(
            data_dir=tmp_path, storage_retries=2, **{k[11:].lower(): v for k, v in server.env().items()}
        )
        url = f"s3://{container}"
    storage, key = open_url(url, settings)
    prefix = key or container
    if request.param == "local":
        prefix = container
    storage.ensure_container(f"{prefix}/x")
    return storage, prefix


def test_small_objects_info_list_delete(store):
    storage, c = store
    storage.write_bytes(f"{c}/a/one.txt", b"hello")
    storage.write_bytes(f"{c}/a/b/two.txt", b"world!")
    info = storage.info(f"{c}/a/one.txt")
    assert info.size == 5 and info.etag and info.key == f"{c}/a/one.txt"
    assert storage.read_bytes(f"{c}/a/one.txt") == b"hello"
    assert [b.key for b in storage.list(f"{c}/a")] == [f"{c}/a/b/two.txt", f"{c}/a/one.txt"]
    assert storage.exists(f"{c}/a/one.txt") and not storage.exists(f"{c}/nope")
    storage.write_bytes(f"{c}/a/one.txt", b"changed")
    assert storage.info(f"{c}/a/one.txt").etag != info.etag  # a new version has a new etag
    storage.delete(f"{c}/a/one.txt")
    storage.delete(f"{c}/a/one.txt")  # deleting twice is fine
    with pytest.raises(BlobNotFoundError):
        storage.info(f"{c}/a/one.txt")
    with pytest.raises(BlobNotFoundError):
        storage.download(f"{c}/missing.svs", Path("/tmp") / uuid.uuid4().hex)
    with pytest.raises(OutsideRootsError):
        storage.info(f"{c}/../etc/passwd")
    assert list(storage.list(f"{c}/empty")) == []


def test_streamed_upload_and_download_round_trip(store, tmp_path):
    storage, c = store
    storage.chunk = 2**20
    payload = hashlib.sha256(b"seed").digest() * (9 * 2**20 // 32 + 7)  # ~9 MB, not a chunk multiple
    assert storage.upload_stream(io.BytesIO(payload), f"{c}/big/blob.bin") == len(payload)
    seen = []
    info = storage.download(f"{c}/big/blob.bin", tmp_path / "dl.bin", progress=lambda d, t: seen.append((d, t)))
    assert info.size == len(payload) and (tmp_path / "dl.bin").read_bytes() == payload
    assert len(seen) >= 9 and seen[-1] == (len(payload), len(payload))
    with pytest.raises(LimitExceededError):
        storage.download(f"{c}/big/blob.bin", tmp_path / "no.bin", limit=1000)
    assert not (tmp_path / "no.bin").exists()


def _pyramid(folder: Path, tiles: int, tag: bytes = b"") -> Path:
    for i in range(tiles):
        path = folder / "s_files" / str(i % 3) / f"{i}_0.jpeg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xff\xd8" + tag + str(i).encode() * 50)
    (folder / "s.dzi").write_text("<Image/>")
    return folder


def test_publish_writes_manifest_last_and_removes_leftovers(store, tmp_path):
    storage, c = store
    out = f"{c}/web-slides-dzi-output/s"
    first = storage.publish_pyramid(_pyramid(tmp_path / "v1", 60), out, source={"etag": "e1"})
    assert first["file_count"] == 61 and storage.verify_manifest(out) == []
    manifest = storage.read_manifest(out)
    assert manifest["source"]["etag"] == "e1" and len(manifest["files"]) == 61
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    # a cancelled (crashed) publish of a new version: the old manifest is gone, no new one appears
    calls = iter(range(10**6))
    after = 0 if type(storage).__name__ == "LocalStorage" else 10  # local checks once, before its rename
    with pytest.raises((CancelledError, StorageError)):
        storage.publish_pyramid(
            _pyramid(tmp_path / "v2", 40, b"2"), out, source={"etag": "e2"}, cancelled=lambda: next(calls) >= after
        )
    if type(storage).__name__ != "LocalStorage":  # local publishes by rename: the old version stays whole
        assert storage.read_manifest(out) is None
    else:
        assert storage.read_manifest(out)["source"]["etag"] == "e1"
    # the retry publishes a complete version and removes files the manifest does not list
    storage.publish_pyramid(_pyramid(tmp_path / "v3", 30, b"3"), out, source={"etag": "e3"})
    names = {b.key[len(out) + 1 :] for b in storage.list(out)}
    manifest = storage.read_manifest(out)
    assert names == {f["path"] for f in manifest["files"]} | {MANIFEST} and manifest["source"]["etag"] == "e3"
    assert storage.verify_manifest(out) == []


def test_local_publish_removes_what_a_killed_publish_left(tmp_path):
    """A publish killed mid-copy leaves its hidden staging folder; the next publish of that output removes it."""
    from tilewright.staging import STAGING_PREFIX

    settings = Settings(data_dir=tmp_path, storage_root=tmp_path / "root")
    storage, _key = open_url(f"file://{tmp_path / 'root'}", settings)
    parent = tmp_path / "root" / "c" / "out"
    parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is certainly not running any more
    leftover = parent / f"{STAGING_PREFIX}s-{dead.pid}-deadbeef"
    (leftover / "slide_files").mkdir(parents=True)
    (leftover / "slide_files" / "half.jpeg").write_bytes(b"x" * 1000)
    storage.publish_pyramid(_pyramid(tmp_path / "v1", 5), "c/out/s")
    assert not leftover.exists() and storage.verify_manifest("c/out/s") == []
    assert sorted(p.name for p in parent.iterdir()) == ["s"]


def test_retries_transient_errors_but_not_others(store):
    storage, _c = store
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError(104, "Connection reset by peer")
        return "ok"

    assert storage.retry(flaky, "k", "test") == "ok" and len(calls) == 3
    calls.clear()

    def always():
        calls.append(1)
        raise TimeoutError("timed out")

    with pytest.raises(StorageError):
        storage.retry(always, "k", "test")
    assert len(calls) == 3  # 1 + storage_retries
    with pytest.raises(BlobNotFoundError):
        storage.retry(lambda: (_ for _ in ()).throw(FileNotFoundError("x")), "k", "test")


def test_url_rules(tmp_path, azurite):
    settings = Settings(
        data_dir=tmp_path, azure_connection_string=azurite.connection_string, input_roots=[str(tmp_path / "in")]
    )
    store, key = open_url(f"{azurite.endpoint}/slides/a%20b/c.svs", settings)
    assert key == "slides/a b/c.svs" and store.url(key) == "az://slides/a b/c.svs"
    assert open_url("abfs://slides@devstoreaccount1.dfs.core.windows.net/x.svs", settings)[1] == "slides/x.svs"
    for bad in (
        "https://other.blob.core.windows.net/slides/c.svs",
        f"{azurite.endpoint}/../x/c.svs",
        "/etc/passwd",
        "file:///etc/passwd",
    ):
        with pytest.raises(OutsideRootsError):
            open_url(bad, settings)
    assert open_url(str(tmp_path / "in" / "x.svs"), settings)[1] == "x.svs"
    with pytest.raises(Exception, match="scheme"):
        open_url("ftp://host/x", settings)


def test_azure_credentials_are_never_logged(tmp_path, azurite, caplog):
    settings = Settings(data_dir=tmp_path, azure_connection_string=azurite.connection_string)
    assert "AccountKey" not in repr(settings) and azurite.connection_string not in str(settings.model_dump())
    store, _ = open_url("az://x", settings)
    assert "AccountKey" not in store.describe()


TRANSFER = textwrap.dedent("""
    import json, os, resource, sys, time
    from pathlib import Path
    from tilewright.config import Settings
    from tilewright.storage import open_url
    def peak_mb():
        # this process image's own peak (VmHWM): getrusage's ru_maxrss survives execve and would
        # report the pytest parent's size at fork time instead
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    size = int(sys.argv[2])
    settings = Settings(azure_connection_string=sys.argv[1], max_upload_bytes=size + 1)
    store, key = open_url("az://memtest/big/blob.bin", settings)
    store.ensure_container(key)
    block = os.urandom(2**20)
    class Generated:  # the content is generated on the fly: never a file, never in memory whole
        def __init__(self): self.left = size
        def read(self, n=-1):
            n = min(self.left, len(block) if n < 0 else min(n, len(block) * 8))
            self.left -= n
            return (block * 8)[:n] if n else b""
    rss_start = peak_mb()
    start = time.perf_counter()
    assert store.upload_stream(Generated(), key) == size
    up = time.perf_counter() - start
    rss_up = peak_mb()
    start = time.perf_counter()
    dest = Path(sys.argv[3])
    info = store.download(key, dest)
    down = time.perf_counter() - start
    ok = dest.stat().st_size == size
    dest.unlink()
    store.delete(key)
    print(json.dumps({"ok": ok, "upload_s": up, "download_s": down, "max_rss_before_mb": rss_start,
                      "max_rss_after_upload_mb": rss_up,
                      "max_rss_mb": peak_mb()}))
""")


def test_one_gigabyte_streamed_through_azurite_stays_under_300_mb(tmp_path, azurite):
    size = 2**30
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", TRANSFER, azurite.connection_string, str(size), str(tmp_path / "dl.bin")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"1 GiB via Azurite: {figures} (total {time.perf_counter() - started:.1f} s)")
    assert figures["ok"] and figures["max_rss_mb"] < 300, figures


def test_publish_dir_replaces_siblings_at_once_and_keeps_other_outputs_staging(tmp_path, monkeypatch):
    """Two outputs of one folder republished at once by one process (threads) each move their old copy aside
    under a name of their own; the stale-staging sweep of output `s` leaves output `s-<n>`'s staging alone."""
    import os

    from tilewright import staging
    from tilewright.staging import STAGING_PREFIX, make_staging, publish_dir

    parent = tmp_path / "out"
    for name in ("a", "b"):
        (parent / name).mkdir(parents=True)
        (parent / name / "old.txt").write_text("old")
    staged = {name: make_staging(parent, name) for name in ("a", "b")}
    for name, folder in staged.items():
        (folder / "new.txt").write_text(name)
    removals: list[str] = []  # a's old copy is still being removed when b's publish moves its own aside
    monkeypatch.setattr(staging.shutil, "rmtree", lambda path, **_kw: removals.append(str(path)))
    for name in ("a", "b"):
        publish_dir(staged[name], parent / name)
    assert len(set(removals)) == 2 and [p.name for p in (parent / "b").iterdir()] == ["new.txt"]
    monkeypatch.undo()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    other = parent / f"{STAGING_PREFIX}s-{dead.pid}-{os.getpid()}-deadbeef"  # output "s-<pid>", alive: not s's
    other.mkdir()
    make_staging(parent, "s")
    assert other.exists()


def test_a_file_in_an_input_root_inside_the_storage_root_keeps_its_storage_key(tmp_path):
    # the storage root is asked first: an event naming such a file publishes where it always did
    settings = Settings(data_dir=tmp_path, input_roots=[str(tmp_path / "storage" / "in" / "x")])
    blob = tmp_path / "storage" / "in" / "x" / "a.png"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"png")
    store, key = open_url(f"file://{blob}", settings)
    assert key == "in/x/a.png" and store.url(key).endswith("/storage/in/x/a.png")
    with pytest.raises(InputError, match="unknown storage URL scheme 'local'"):
        open_url("local://in/x/a.png", settings)  # `local` names a store, never a URL scheme
