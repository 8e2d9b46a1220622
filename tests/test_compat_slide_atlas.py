"""slide-atlas's uploader, unchanged: `uploader_driver.py -i INPUT -c COLLECTION [-s SESSION] [-t TILESIZE]
[-o] [-b] [-n] [-v]` as `tilewright upload` with the same flags, converting here or sending to a real
`tilewright serve` subprocess (`--server`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest
import tifffile

from services import clean_env, free_port, start_server, wait_until

TILEWRIGHT = str(Path(sys.executable).with_name("tilewright"))
SLIDE = "svs/cmu-1-small-region.svs"  # 2220 x 2967, stored in 240-pixel JPEG tiles
TOKEN = "atlas-token"


def run(*args, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TILEWRIGHT_") or k == "TILEWRIGHT_TESTDATA"}
    full.pop("CONFIG_FILE", None)
    return subprocess.run(
        [TILEWRIGHT, *map(str, args)], capture_output=True, text=True, timeout=180, env={**full, **(env or {})}
    )


def levels_and_tile(path: Path) -> tuple[int, int]:
    with tifffile.TiffFile(path) as tif:
        return len(tif.series[0].levels), tif.pages[0].tilewidth


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `tilewright serve` that needs the API token for uploads."""
    folder = tmp_path_factory.mktemp("atlas-server")
    port = free_port()
    env = clean_env(TILEWRIGHT_DATA_DIR=str(folder / "data"), TILEWRIGHT_API_TOKEN=TOKEN, TILEWRIGHT_CONCURRENCY="1")
    process = start_server(env, port, folder / "serve.log")
    try:
        yield f"http://127.0.0.1:{port}", folder / "data" / "outputs"
    finally:
        process.stop()


def test_dry_run_says_what_would_be_written_and_writes_nothing(tmp_path, testdata):
    env = {"TILEWRIGHT_DATA_DIR": str(tmp_path / "data")}
    collection = "53d0971cdd98b50867b0eecd"  # slide-atlas's collections are ObjectIds: a valid name here
    done = run("upload", "-i", testdata(SLIDE), "-c", collection, "-t", "512", "-n", "-v", env=env)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "data" / "outputs" / collection / "cmu-1-small-region.tiff"
    assert f"would write {out}: 2220 x 2967, 4 levels, 44 tiles of 512" in done.stdout
    assert "openslide, 2220 x 2967; tile size 512 (-t)" in done.stdout  # -v: how it was decided
    assert not (tmp_path / "data" / "outputs").exists()
    verbose = run("upload", "-i", testdata(SLIDE), "-c", "COLL", "-n", "-vv", env=env)
    assert verbose.stdout.startswith(f"arguments: input={testdata(SLIDE)}, collection=COLL, session=None")
    assert "tile size 240 (the input's tiles)" in verbose.stdout  # no -t: the input's own tiles


def test_upload_converts_into_the_collection_here(tmp_path, testdata):
    env = {"TILEWRIGHT_DATA_DIR": str(tmp_path / "data")}
    collection = tmp_path / "data" / "outputs" / "COLL"
    full = run("upload", "-i", testdata(SLIDE), "-c", "COLL", "-s", "s1", "-t", "512", env=env)
    assert full.returncode == 0, full.stderr
    assert levels_and_tile(collection / "s1" / "cmu-1-small-region.tiff") == (4, 512)
    again = run("upload", "-i", testdata(SLIDE), "-c", "COLL", "-s", "s1", "-b", env=env)
    assert again.returncode == 0 and "already in the collection (-o replaces it)" in again.stdout
    base = run("upload", "-i", testdata(SLIDE), "-c", "COLL", "-s", "s1", "-b", "-o", env=env)
    assert base.returncode == 0, base.stderr
    assert levels_and_tile(collection / "s1" / "cmu-1-small-region.tiff") == (1, 240)  # -b: the base only

    folder = tmp_path / "case7"  # a folder: every image in it, the session named after it
    folder.mkdir()
    shutil.copy(testdata("jpeg-png/boxes.png"), folder / "boxes.png")
    batch = run("upload", "-i", folder, "-c", "COLL", env=env)
    assert batch.returncode == 0, batch.stderr
    assert levels_and_tile(collection / "case7" / "boxes.tiff")[1] == 256  # an untiled input: 256
    with zipfile.ZipFile(tmp_path / "slides.zip", "w") as archive:
        archive.write(folder / "boxes.png", "boxes.png")
    zipped = run("upload", "-i", tmp_path / "slides.zip", "-c", "COLL", env=env)
    assert zipped.returncode == 2 and "zip archives are not unpacked" in zipped.stderr


def test_upload_to_a_running_server(server, testdata, tmp_path):
    url, outputs = server
    token = {"TILEWRIGHT_API_TOKEN": TOKEN}
    dry = run("upload", "-i", testdata(SLIDE), "-c", "COLL", "-t", "512", "-n", "-v", "--server", url, env=token)
    assert dry.returncode == 0, dry.stderr
    assert f"would upload {testdata(SLIDE)} (openslide, 2220 x 2967, " in dry.stdout
    assert f"to {url}/images?collection=COLL&kind=tiff&filename=cmu-1-small-region.svs&tile_size=512" in dry.stdout
    assert httpx.get(f"{url}/images?collection=COLL").json() == []  # nothing sent

    refused = run("upload", "-i", testdata(SLIDE), "-c", "COLL", "--server", url)  # no token
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "answered 401" in refused.stderr

    done = run("upload", "-i", testdata(SLIDE), "-c", "COLL", "-s", "s1", "-t", "512", "-b", "--server", url, env=token)
    assert done.returncode == 0, done.stderr
    assert "job succeeded" in done.stdout and "a server keeps no sessions" in done.stderr
    (image,) = httpx.get(f"{url}/images?collection=COLL").json()
    assert image["state"] == "succeeded" and image["kind"] == "tiff"
    assert levels_and_tile(outputs / "COLL" / image["id"] / "slide.tiff") == (1, 512)
    same = run("upload", "-i", testdata(SLIDE), "-c", "COLL", "-t", "512", "-b", "--server", url, env=token)
    assert same.returncode == 0 and f"image {image['id']} in COLL, job succeeded" in same.stdout  # given back
    again = run(
        "upload", "-i", testdata(SLIDE), "-c", "COLL", "-t", "512", "-b", "-o", "--no-wait", "--server", url, env=token
    )
    assert again.returncode == 0, again.stderr
    second = [other for other in httpx.get(f"{url}/images?collection=COLL").json() if other["id"] != image["id"]]
    assert len(second) == 1 and f"image {second[0]['id']} in COLL" in again.stdout  # -o: converted again
    wait_until(lambda: httpx.get(f"{url}/images/{second[0]['id']}").json()["state"] == "succeeded", 120, "the job")

    unreachable = run("upload", "-i", testdata(SLIDE), "-c", "COLL", "--server", f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 2 and "cannot reach" in unreachable.stderr
