"""Logs: no line carries a secret (connection-string keys, SAS signatures, URL passwords); an operator's
dictConfig file (YAML or JSON) takes effect in a real server; JSON lines; the job id on a job's lines; --debug."""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from services import TILEWRIGHT, Process, clean_env, free_port, wait_until
from tilewright.config import Settings
from tilewright.db import init_db
from tilewright.jobs.runner import execute
from tilewright.jobs.service import submit_job
from tilewright.logs import redact, setup_logging


@pytest.fixture(autouse=True)
def _logging_restored():
    """setup_logging changes the process's logging: put back the root logger and libvips' level (libvips at
    DEBUG logs from its own threads through Python: left on, it slows and can stall later libvips tests)."""
    root, vips = logging.getLogger(), logging.getLogger("pyvips")
    handlers, level, vips_level = root.handlers[:], root.level, vips.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)  # setLevel, not `.level =`: it also clears the loggers' cached isEnabledFor answers
    vips.setLevel(vips_level)


@pytest.mark.parametrize(
    "text, secret, kept",
    [
        (
            "DefaultEndpointsProtocol=http;AccountName=dev;AccountKey=c2VjcmV0a2V5;BlobEndpoint=x",
            "c2VjcmV0a2V5",
            "AccountName=dev",
        ),
        ("https://acct.blob.core.windows.net/c/b.svs?sv=2024&sig=AbC%2Fdef", "AbC%2Fdef", "sv=2024"),
        ("tile cache: Redis at redis://:hunter2@10.0.0.5:6379/0 cannot be reached", "hunter2", "10.0.0.5:6379/0"),
        ("broker amqp://guest:s3cr3t@rabbit:5672// unreachable", "s3cr3t", "amqp://guest:***@rabbit:5672//"),
        ('127.0.0.1:5 - "POST /events/eventgrid?key=ev3ntk3y HTTP/1.1" 200', "ev3ntk3y", "/events/eventgrid?key="),
        ("POST /api/resize?width=20&code=funck3y", "funck3y", "width=20"),
        (
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE7/20261202/us-east-1/s3/aws4_request, "
            "SignedHeaders=host, Signature=abcdef0123",
            "AKIAEXAMPLE7",
            "SignedHeaders=host",
        ),
    ],
)
def test_redact_masks_secrets_and_keeps_the_rest(text, secret, kept):
    masked = redact(text)
    assert secret not in masked and "***" in masked and kept in masked


def test_a_url_without_a_password_is_left_alone():
    for text in ("redis://127.0.0.1:6379/0", "http://user@host/path", "see https://example.org:8080/a:b@c"):
        assert redact(text) == text


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_log_lines_are_redacted_in_both_formats(log_format, capsys):
    setup_logging(Settings(log_format=log_format))
    logging.getLogger("tilewright.test").warning("connecting to redis://:hunter2@cache:6379/0")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "hunter2" not in err and "redis://:***@cache:6379/0" in err
    if log_format == "json":
        assert json.loads(err)["level"] == "warning"


# -- operators' logging: a dictConfig file, JSON lines, the job id, --debug -------------------------------------

LOG_FILE_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "custom": {"format": "CUSTOM %(levelname)s %(name)s job=%(job_id)s: %(message)s"},
        "json": {"()": "tilewright.logs.JsonFormatter"},
    },
    "handlers": {
        "file": {"class": "logging.FileHandler", "filename": "PLACEHOLDER", "formatter": "custom"},
    },
    "root": {"level": "INFO", "handlers": ["file"]},
}


def _log_config(tmp_path, suffix: str, formatter: str) -> tuple[Path, Path]:
    """A dictConfig file (YAML or JSON) sending every INFO line to a file with `formatter`."""
    written = tmp_path / f"written-{suffix}.log"
    config = json.loads(json.dumps(LOG_FILE_CONFIG))
    config["handlers"]["file"].update(filename=str(written), formatter=formatter)
    path = tmp_path / f"logging.{suffix}"
    path.write_text(yaml.safe_dump(config) if suffix == "yaml" else json.dumps(config))
    return path, written


def _serve_once(tmp_path, env: dict[str, str], *args: str) -> str:
    """Start a real `tilewright serve ARGS` on a fresh data folder, GET /healthz (with a secret in its query),
    stop it; what it wrote on stdout and stderr."""
    port = free_port()
    log = tmp_path / f"serve-{port}.out"
    env = clean_env(TILEWRIGHT_DATA_DIR=str(tmp_path / f"data-{port}"), **env)
    server = Process([TILEWRIGHT, "serve", "--port", str(port), *args], env, log)
    try:
        wait_until(
            lambda: server.proc.poll() is not None or httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200,
            60,
            "tilewright serve",
        )
        assert server.proc.poll() is None, server.output()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz?token=hunter2", timeout=5).status_code == 200
    finally:
        server.stop()
    return log.read_text()


@pytest.mark.parametrize(
    "suffix, formatter, env_name", [("yaml", "custom", "TILEWRIGHT_LOG_CONFIG"), ("json", "json", "LOG_CONFIG_FILE")]
)
def test_a_dictconfig_file_takes_effect_in_a_real_server(tmp_path, suffix, formatter, env_name):
    config, written = _log_config(tmp_path, suffix, formatter)
    _serve_once(tmp_path, {env_name: str(config)})
    lines = written.read_text().splitlines()
    if formatter == "custom":
        # uvicorn's own lines and the access log at the file's INFO level, in the file's format, job=None outside jobs
        assert any(line.startswith("CUSTOM INFO uvicorn.error job=None: Uvicorn running on") for line in lines), lines
        access = [line for line in lines if "uvicorn.access" in line and "/healthz" in line]
    else:
        records = [json.loads(line) for line in lines]  # every line is one JSON object
        assert any(r["logger"] == "uvicorn.error" and r["level"] == "info" for r in records), records
        access = [r["message"] for r in records if r["logger"] == "uvicorn.access" and "/healthz" in r["message"]]
    assert access and all("hunter2" not in line and "token=***" in line for line in access), access


def test_a_bad_log_config_file_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "logging.yaml"
    bad.write_text("version: 1\nhandlers: {h: {class: no.such.Handler}}\nroot: {handlers: [h]}\n")
    result = subprocess.run(
        [TILEWRIGHT, "config"], env=clean_env(TILEWRIGHT_LOG_CONFIG=str(bad)), capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert str(bad) in result.stderr and "Traceback" not in result.stderr


def test_debug_option_shows_debug_lines_and_is_off_by_default(tmp_path):
    assert re.search(r" DEBUG \S+: ", _serve_once(tmp_path, {}, "--debug"))  # e.g. alembic's, on a fresh database
    assert " DEBUG " not in _serve_once(tmp_path, {})


@pytest.mark.parametrize("env", [{"TILEWRIGHT_DEBUG": "true"}, {"DEBUG": "1"}])
def test_debug_from_the_environment_and_pims_alias(env, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    setup_logging(Settings())
    logging.getLogger("tilewright.test").debug("a debug line")
    assert "DEBUG tilewright.test: a debug line" in capsys.readouterr().err


def test_every_line_a_job_writes_carries_its_id(tmp_path, testdata, capsys):
    """A real conversion at DEBUG: the runner's lines and libvips' own (which never name the job) carry job_id."""
    settings = Settings(data_dir=tmp_path, log_format="json", debug=True, input_roots=[testdata("svs").parent])
    setup_logging(settings)
    init_db(settings)
    job, _ = submit_job(settings, None, "convert", {"input": str(testdata("svs/cmu-1-small-region.svs"))})
    logging.getLogger("tilewright.test").warning("before the job")
    capsys.readouterr()
    assert execute(job["id"], settings).status == "succeeded"  # the runner sets the job id itself
    inside = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    logging.getLogger("tilewright.test").warning("after the job")
    after = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert {r["logger"] for r in inside} >= {"tilewright.jobs.runner", "pyvips"}
    assert all(r.get("job_id") == job["id"] for r in inside), [r for r in inside if r.get("job_id") != job["id"]][:3]
    assert "job_id" not in after
