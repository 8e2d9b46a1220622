"""The official IIIF Image API validator (PyPI `iiif-validator`, Apache-2.0) against tilewright's IIIF.

Every validator test of a level is run, through its Python API, against real HTTP servers on loopback
ports: at level 0 on a static `tilewright convert --to iiif` folder served by Python's http.server, and
on the folders that convert and import jobs publish under `/outputs/`; at level 2 on the dynamic
`/iiif/3/{id}` service of a real `tilewright serve`.

The validator checks pixels against its own test image, a 1000 x 1000 grid of 100-pixel squares whose
colours it hardcodes (`ValidationInfo.colorInfo[column][row]`): the image is drawn here from those
colours, in the session, and never committed.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
import pyvips
from iiif_validator import validator  # as a module: pytest would collect its `TestSuite` class

from services import TILEWRIGHT, clean_env, finished, free_port, start_server

VERSION = "3.0"

#: validator tests not run, each for a bug of the validator's (the test that excludes one checks by hand
#: what that test checks correctly)
VALIDATOR_BUGS = {
    # size_noup (iiif-validator 1.0.5) asks `!2000,3000` of the 1000 x 1000 image and wants a 400, but in
    # Image API 3.0 `!w,h` "must be as large as possible but not larger than the extracted region, w or h":
    # the whole 1000 x 1000 image, a 200 (the reading of cantaloupe-project/cantaloupe#600 and
    # ruven/iipsrv#271; IIIF/image-validator#100 is the same test failing other servers). On that 200 the
    # test also crashes (`raise ValidatorError()` without its arguments: a TypeError).
    "size_noup",
}


@pytest.fixture(scope="module")
def grid_image(tmp_path_factory) -> Path:
    """The validator's test image: square (column x, row y) is `colorInfo[x][y]`, as a lossless PNG."""
    colours = np.array(validator.ValidationInfo().colorInfo, dtype=np.uint8)  # [x][y] -> rgb
    pixels = np.repeat(np.repeat(colours.transpose(1, 0, 2), 100, axis=0), 100, axis=1)  # rows are y
    path = tmp_path_factory.mktemp("validator") / "in" / "grid.png"
    path.parent.mkdir()
    pyvips.Image.new_from_array(np.ascontiguousarray(pixels), interpretation="srgb").pngsave(str(path))
    return path


def validate(base: str, level: int) -> dict[str, str]:
    """Run every validator test up to `level` against the image service at `base`
    (http://HOST:PORT/PREFIX/IDENTIFIER); returns {test: why it failed}, empty when all pass."""
    server, _, path = base.removeprefix("http://").partition("/")
    prefix, _, identifier = path.rpartition("/")
    tests = validator.TestSuite(validator.ValidationInfo()).list_tests(VERSION)
    names = sorted(name for name, test in tests.items() if test["level"] <= level and name not in VALIDATOR_BUGS)
    assert len(names) >= (5 if level == 0 else 32), names  # the validator's tests, not a subset
    random.seed(11)  # the validator picks squares and makes random bad requests: the same ones every run
    failures = {}
    for name in names:
        result = validator.ImageAPI(identifier, server, prefix, "http", "", VERSION, debug=False)
        try:
            validator.TestSuite(validator.ValidationInfo()).run_test(name, result)
        except Exception as exc:  # noqa: BLE001 - the validator's own CLI counts any exception as a failure
            failures[name] = f"{type(exc).__name__}: {exc} (urls {result.urls})"
            continue
        if result.exception is not None:
            e = result.exception
            failures[name] = f"{e} (url {e.url}, status {e.status}, urls {result.urls})"
    return failures


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the base class names it `format`
        pass


@pytest.fixture
def static_server(tmp_path) -> Iterator[tuple[str, Path]]:
    """Python's http.server on a free loopback port serving a folder: (its URL, the folder)."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def tilewright(*args: object, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TILEWRIGHT, *map(str, args)], env=env, capture_output=True, text=True, timeout=120)


def test_static_convert_output_passes_level0(grid_image, static_server, tmp_path):
    """`convert --to iiif --iiif-id ID` into the folder served at ID: info.json's id is ID, and the
    validator's every level-0 test passes (`full/max`, the image's squares, jpg, `full` refused)."""
    url, root = static_server
    image_id = f"{url}/images/iiif/grid"
    env = clean_env(TILEWRIGHT_DATA_DIR=str(tmp_path / "data"))
    done = tilewright(
        "convert",
        grid_image,
        "-o",
        root / "images" / "iiif" / "grid",
        "--to",
        "iiif",
        "--iiif-id",
        image_id,
        "--json",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tiles"] == 6  # four 512-pixel tiles, full/500,500 and full/max
    info = httpx.get(f"{image_id}/info.json").json()
    assert info["id"] == image_id and info["profile"] == "level0"
    assert validate(image_id, 0) == {}
    # without an id, outside the output root nothing says where the folder will be served: exit 2, no output
    missing = tilewright("convert", grid_image, "-o", root / "other", "--to", "iiif", env=env)
    assert missing.returncode == 2 and "--iiif-id" in missing.stderr and not (root / "other").exists()


def test_server_dynamic_passes_level2_and_its_published_folders_level0(grid_image, tmp_path):
    """A real `tilewright serve`: the grid uploaded (a convert job to IIIF) and imported (an import job):
    `/iiif/3/{id}` passes every level-2 test, and both static folders under `/outputs/` pass level 0
    with the ids the jobs gave them."""
    port = free_port()
    env = clean_env(
        TILEWRIGHT_DATA_DIR=str(tmp_path / "data"),
        TILEWRIGHT_PORT=str(port),  # the jobs' default ids are the server's URL: its port
        TILEWRIGHT_INPUT_ROOTS=json.dumps([str(grid_image.parent)]),
    )
    base = f"http://127.0.0.1:{port}"
    server = start_server(env, port, tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            upload = client.post(
                "/images", params={"filename": "grid.png", "kind": "iiif"}, content=grid_image.read_bytes()
            )
            assert upload.status_code == 201, upload.text
            image_id = upload.json()["image"]["id"]
            imported = client.post(
                "/jobs", json={"kind": "import", "params": {"input": str(grid_image.parent), "kind": "iiif"}}
            )
            assert imported.status_code == 201, imported.text
            converted = finished(client, upload.json()["job"]["id"])
            assert converted["state"] == "succeeded", converted
            batch = finished(client, imported.json()["id"])
            assert batch["state"] == "succeeded" and not batch["outputs"]["failed"], batch

            service = f"{base}/iiif/3/{image_id}"
            assert validate(service, 2) == {}
            # what size_noup checks rightly (VALIDATOR_BUGS): past 100% only with ^, and `!w,h` never upscales
            for size in ("1576,1576", ",1576", "1576,", "pct:200"):
                assert client.get(f"{service}/full/{size}/0/default.jpg").status_code == 400, size
                assert client.get(f"{service}/full/^{size}/0/default.jpg").status_code == 200, size
            confined = client.get(f"{service}/full/!2000,3000/0/default.jpg")
            assert confined.status_code == 200
            assert pyvips.Image.new_from_buffer(confined.content, "").width == 1000

            for url in (f"{base}/outputs/default/{image_id}/slide", base + batch["outputs"]["urls"][0]):
                assert client.get(f"{url}/info.json").json()["id"] == url
                assert validate(url, 0) == {}, url
    finally:
        server.stop()
