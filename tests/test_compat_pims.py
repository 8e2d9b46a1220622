"""Cytomine PIMS's operators and scripts, unchanged: `CONFIG_FILE` naming PIMS's `.env`, its
`checkerResolution.csv`, and `import_local_images.py --path DIR` (as `tilewright import --path DIR`).

Real files and real processes: the `tilewright` command in a subprocess, the app in a TestClient.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tilewright.config import Settings, get_settings
from tilewright.errors import ConfigError
from tilewright.formats import detect
from tilewright.server import create_app

TILEWRIGHT = str(Path(sys.executable).with_name("tilewright"))
SLIDE = "svs/cmu-1-small-region.svs"

# PIMS's own pims-config.env keys (pims/config.py), quoted as PIMS's sample file quotes them
PIMS_ENV = """\
ROOT="{root}"
PENDING_PATH="{root}/pending"
DATASET_PATH="{root}/dataset"
WRITING_PATH="/data/pims/tmp"
CHECKER_RESOLUTION_FILE="{csv}"
DEFAULT_IMAGE_SIZE_SAFETY_MODE="SAFE_REJECT"
DEFAULT_ANNOTATION_ORIGIN="LEFT_TOP"
OUTPUT_SIZE_LIMIT="150"
PIMS_URL="http://pims.example.org"
API_BASE_PATH="/ims"
CACHE_URL="redis://pims-cache:6379"
cache_ttl_tile=3600
IMAGE_RESPONSE_CACHE_CONTROL_MAX_AGE=600
TASK_QUEUE_ENABLED=true
TASK_QUEUE_URL="rabbitmq:5672"
TASK_QUEUE_USER="pims"
TASK_QUEUE_PASSWORD="secret"
VIPS_CACHE_MAX_ITEMS=100
CYTOMINE_PUBLIC_KEY=""
CYTOMINE_PRIVATE_KEY=""
LOG_CONFIG_FILE="{root}/logging.yml"
DEBUG=true
"""
# PIMS's plug-in names (scripts/plugin-list.csv): the vips reader first; bioformats is a plug-in tilewright has not
CHECKERS = "name,resolution_order\npims_plugin_format_bioformats,-2\npims_plugin_format_vips,-1\nopenslide,\n"


def run(*args, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TILEWRIGHT_") or k == "TILEWRIGHT_TESTDATA"}
    full.pop("CONFIG_FILE", None)
    return subprocess.run(
        [TILEWRIGHT, *map(str, args)], capture_output=True, text=True, timeout=120, env={**full, **(env or {})}, cwd=cwd
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_pims_env_becomes_tilewright_settings(tmp_path, monkeypatch):
    csv = write(tmp_path / "checkerResolution.csv", CHECKERS)
    env = write(tmp_path / "pims-config.env", PIMS_ENV.format(root=tmp_path / "pims", csv=csv))
    (tmp_path / "pims").mkdir()
    write(tmp_path / "pims" / "logging.yml", "version: 1\n")  # the file LOG_CONFIG_FILE names must exist
    monkeypatch.setenv("CONFIG_FILE", str(env))
    settings = Settings()
    assert settings.data_dir == tmp_path / "pims" and settings.upload_dir == tmp_path / "pims" / "pending"
    assert settings.input_roots == [tmp_path / "pims" / "dataset"] and settings.checker_resolution_file == csv
    assert settings.max_region_pixels == 150 * 150  # PIMS caps each side; tilewright the area
    assert (settings.public_url, settings.root_path) == ("http://pims.example.org", "/ims")
    assert (settings.cache_url, settings.cache_ttl_seconds) == ("redis://pims-cache:6379", 3600)
    assert settings.tile_cache_control == "public, max-age=600"
    assert (settings.executor, settings.broker_url) == ("celery", "amqp://pims:secret@rabbitmq:5672//")
    # the logging settings are another module's; once they exist they take these keys
    assert settings.log_config is not None and Path(settings.log_config) == tmp_path / "pims" / "logging.yml"
    assert settings.debug is True

    monkeypatch.setenv("TILEWRIGHT_CACHE_TTL_SECONDS", "5")  # tilewright's own variables rank above the file
    assert Settings().cache_ttl_seconds == 5
    write(env, "ROOT=/data/pims\nCACHE_ENABLED=false\nCACHE_URL=redis://pims-cache:6379\n")
    off = Settings()
    assert (off.cache_url, off.cache_bytes, off.checker_resolution_file) == ("", 0, None)
    write(env, "ROOT=/data/pims\nTASK_QUEUE_ENABLED=false\nTASK_QUEUE_URL=rabbitmq:5672\n")
    toml = write(tmp_path / "tilewright.toml", 'data_dir = "/srv/tilewright"\nexecutor = "celery"\n')
    monkeypatch.setenv("TILEWRIGHT_CONFIG", str(toml))  # the PIMS file ranks above the TOML file
    queue = Settings()
    assert (queue.data_dir, queue.executor) == (Path("/data/pims"), "embedded")
    assert queue.broker_url == "amqp://router:router@rabbitmq:5672//"  # PIMS's default account


def test_the_checker_resolution_order_picks_the_reader(tmp_path, testdata):
    slide = testdata(SLIDE)
    write(tmp_path / "checkerResolution.csv", CHECKERS)  # where PIMS looks when the .env names none
    env = write(tmp_path / "pims-config.env", f'ROOT="{tmp_path / "pims"}"\n')
    ordered = run("info", slide, "--no-properties", env={"CONFIG_FILE": str(env)}, cwd=tmp_path)
    assert ordered.returncode == 0, ordered.stderr
    assert json.loads(ordered.stdout)["reader"] == "vips"
    plain = run("info", slide, "--no-properties", cwd=tmp_path)  # no CONFIG_FILE: nothing of PIMS is read
    assert json.loads(plain.stdout)["reader"] == "openslide"

    # negative first, unset = 0 keeps the built-in order among equals, a positive order goes last
    later = write(tmp_path / "later.csv", "name,resolution_order\nopenslide,3\nvips,\n")
    assert detect(slide, Settings(checker_resolution_file=later)).name == "vips"
    first = write(tmp_path / "first.csv", "name,resolution_order\nvips,-1\nopenslide,-5\n")
    assert detect(slide, Settings(checker_resolution_file=first)).name == "openslide"


def test_a_bad_pims_file_is_one_line_naming_the_key(tmp_path, testdata, monkeypatch):
    env = write(tmp_path / "typo.env", "ROOT=/data/pims\nCACHE_TIMEOUT=3\n")
    done = run("info", testdata(SLIDE), env={"CONFIG_FILE": str(env)})
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"tilewright: error: CONFIG_FILE {env}: unknown key CACHE_TIMEOUT (not a PIMS setting)\n"
    cases = {
        "ROOT=/data/pims\nOUTPUT_SIZE_LIMIT=lots\n": "bad value for OUTPUT_SIZE_LIMIT: Input should be a valid integer",
        f"CHECKER_RESOLUTION_FILE={tmp_path / 'missing.csv'}\n": "CHECKER_RESOLUTION_FILE: Value error, cannot read",
        "CHECKER_RESOLUTION_FILE=bad.csv\n": "line 2: resolution_order of 'vips' must be an integer or empty",
    }
    write(tmp_path / "bad.csv", "name,resolution_order\nvips,first\n")
    monkeypatch.chdir(tmp_path)
    for number, (text, message) in enumerate(cases.items()):
        monkeypatch.setenv("CONFIG_FILE", str(write(tmp_path / f"bad{number}.env", text)))
        get_settings.cache_clear()
        with pytest.raises(ConfigError, match=re.escape(message)):
            get_settings()
    monkeypatch.setenv("CONFIG_FILE", str(tmp_path / "nowhere.env"))
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="CONFIG_FILE names .*nowhere.env', which is not a file"):
        get_settings()


def test_import_path_as_import_local_images(tmp_path, testdata):
    folder = tmp_path / "dataset"
    (folder / "case1").mkdir(parents=True)
    shutil.copy(testdata("jpeg-png/boxes.png"), folder / "case1" / "boxes.png")
    env = {"CONFIG_FILE": str(write(tmp_path / "pims.env", f'ROOT="{tmp_path / "pims"}"\n'))}
    # PIMS: CONFIG_FILE=/path/to/config.env python import_local_images.py --path /my/folder (no output: its ROOT)
    done = run("import", "--path", folder, env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pims" / "outputs" / "case1" / "boxes.dzi").is_file()
    assert "converted 1, skipped 0" in done.stdout
    one = run("import", "--path", folder / "case1" / "boxes.png", "-o", tmp_path / "one", "--to", "tiff")
    assert one.returncode == 0, one.stderr
    assert (tmp_path / "one" / "boxes.tiff").is_file()
    both = run("import", folder, "--path", folder)
    assert both.returncode == 2 and "as DIRECTORY or as --path" in both.stderr


def test_output_size_limit_caps_what_the_server_renders(tmp_path, testdata, monkeypatch):
    env = write(tmp_path / "pims.env", f'ROOT="{tmp_path / "pims"}"\nOUTPUT_SIZE_LIMIT="150"\n')
    monkeypatch.setenv("CONFIG_FILE", str(env))
    settings = Settings(job_retry_backoff_seconds=0.1)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        upload = client.post("/images?filename=boxes.png", content=testdata("jpeg-png/boxes.png").read_bytes())
        assert upload.status_code == 201, upload.text
        image = upload.json()["image"]["id"]
        assert client.get(f"/images/{image}/thumbnail?size=150").status_code == 200
        refused = client.get(f"/images/{image}/thumbnail?size=151")
        assert refused.status_code == 400 and "over the limit" in refused.json()["detail"]
    assert (tmp_path / "pims" / "uploads" / image).is_dir()  # ROOT is where the server keeps its state
