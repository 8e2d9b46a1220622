"""Deployment artefacts: compose.yaml, the Dockerfile and the systemd units name only settings that exist (the
names derived from `Settings`, never listed here) with values it accepts; and scripts/cluster.sh starts the
cluster without containers (PostgreSQL, RabbitMQ, a server, 2 workers), converts a real slide on a worker,
serves its tiles and stops every process it started."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import AliasChoices

from services import REPO, TILEWRIGHT, clean_env, wait_until
from tilewright.config import Settings

PREFIX = Settings.model_config["env_prefix"]
TILEWRIGHT_NAME = re.compile(rf"\b{PREFIX}[A-Z0-9_]+\b")
UNITS = sorted((REPO / "deploy" / "systemd").glob("*.service"))


def setting_env_names() -> set[str]:
    """Every environment name a setting is read from: PREFIX + field name, and its aliases."""
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"{PREFIX}{name}".upper())
        if isinstance(field.validation_alias, AliasChoices):
            names.update(str(choice).upper() for choice in field.validation_alias.choices if choice != name)
    return names


def assert_accepted(values: dict[str, str], where: str, monkeypatch) -> None:
    """These TILEWRIGHT_* values, set in the environment, make valid settings."""
    unknown = {name for name in values if name.startswith(PREFIX)} - setting_env_names()
    assert not unknown, f"{where} names {sorted(unknown)}, which are not settings"
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    Settings()  # raises naming the first value refused


def compose_defaults(text: str) -> str:
    """compose.yaml's text with every `${NAME:-default}` replaced by its default (inner ones first)."""
    pattern = re.compile(r"\$\{[A-Za-z0-9_]+(?::?-([^${}]*))?\}")
    while (replaced := pattern.sub(lambda m: m.group(1) or "", text)) != text:
        text = replaced
    return text


def test_every_setting_env_name_is_derived_with_the_aliases():
    names = setting_env_names()
    assert {"TILEWRIGHT_BROKER_URL", "TILEWRIGHT_LOG_CONFIG", "LOG_CONFIG_FILE", "DEBUG"} <= names


# -- compose.yaml -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def test_compose_has_the_cluster_with_restart_policies_and_healthchecks(compose):
    services = compose["services"]
    assert set(services) == {"server", "worker", "postgres", "rabbitmq", "redis", "azurite"}
    images = {name: service["image"].split(":")[0] for name, service in services.items()}
    assert images == {
        "server": "${IMAGE",  # tilewright's own image, built from the Dockerfile here
        "worker": "${IMAGE",
        "postgres": "postgres",
        "rabbitmq": "rabbitmq",
        "redis": "redis",
        "azurite": "mcr.microsoft.com/azure-storage/azurite",
    }
    assert services["server"]["build"] == services["worker"]["build"] == "."
    assert services["server"]["command"] == ["serve"] and services["worker"]["command"] == ["worker"]
    assert "replicas" in services["worker"]["deploy"]
    for name, service in services.items():
        assert service["restart"] in ("always", "unless-stopped"), name
        # a worker answers no HTTP: its supervisor is the restart policy
        assert service["healthcheck"] == {"disable": True} if name == "worker" else "test" in service["healthcheck"]
    assert "/healthz" in str(services["server"]["healthcheck"]["test"])
    # the workers wait for the server, which migrates the database, and everything for the stores
    assert set(services["worker"]["depends_on"]) == {"server", "postgres", "rabbitmq", "redis"}


def test_compose_names_only_settings_with_values_they_accept(compose, monkeypatch):
    text = (REPO / "compose.yaml").read_text()
    unknown = set(TILEWRIGHT_NAME.findall(text)) - setting_env_names()
    assert not unknown, f"compose.yaml names {sorted(unknown)}, which are not settings"
    environment = yaml.safe_load(compose_defaults(text))["services"]["server"]["environment"]
    assert environment["TILEWRIGHT_EXECUTOR"] == "celery" and environment["TILEWRIGHT_DATA_DIR"] == "/data"
    assert environment["TILEWRIGHT_BROKER_URL"].startswith("amqp://")
    assert_accepted({k: str(v) for k, v in environment.items()}, "compose.yaml", monkeypatch)


# -- Dockerfile ---------------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def test_dockerfile_is_slim_python_wheels_non_root_serve_and_healthcheck():
    steps = dockerfile_instructions()
    args = {value.split("=")[0]: value.split("=", 1)[1] for kind, value in steps if kind == "ARG" and "=" in value}
    assert args["BASE"] == "python:3.11-slim"
    froms = [value for kind, value in steps if kind == "FROM"]
    assert froms[-1] == "${BASE}" and "${BASE} AS builder" in froms  # the image and its builder: one base
    run = " ".join(value for kind, value in steps if kind == "RUN")
    assert "pip wheel" in run and "-c constraints.txt" in run
    assert "--no-index --find-links=/wheels -c /constraints.txt" in run  # the image installs the wheels only
    assert dict(steps)["USER"] not in ("root", "0")
    assert "/healthz" in dict(steps)["HEALTHCHECK"]
    assert dict(steps)["ENTRYPOINT"] == '["tilewright"]' and dict(steps)["CMD"] == '["serve"]'
    assert dict(steps)["VOLUME"] == "/data"


def test_dockerfile_env_names_only_settings_with_values_they_accept(monkeypatch):
    env = {}
    for kind, value in dockerfile_instructions():
        if kind == "ENV":
            env.update(pair.split("=", 1) for pair in value.split())
    assert env["TILEWRIGHT_HOST"] == "0.0.0.0" and env["TILEWRIGHT_DATA_DIR"] == "/data"
    assert_accepted(env, "Dockerfile", monkeypatch)
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ignored[1:2] == ["*"] and {"!src/", "!constraints.txt", "!pyproject.toml"} <= set(ignored)


# -- systemd ------------------------------------------------------------------------------------------------------


def test_systemd_units_restart_always_and_name_only_settings(monkeypatch):
    assert {unit.name for unit in UNITS} == {"tilewright-server.service", "tilewright-worker@.service"}
    for unit in UNITS:
        text = unit.read_text()
        assert "\nRestart=always\n" in text, unit.name
        env = dict(line.split("=", 2)[1:] for line in text.splitlines() if line.startswith("Environment="))
        assert_accepted(env, unit.name, monkeypatch)
        for name in env:
            monkeypatch.delenv(name)


def test_systemd_units_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed (Debian's systemd package)")
    for unit in UNITS:  # with the real command in ExecStart: systemd-analyze checks that it exists
        text = unit.read_text().replace("/opt/tilewright/bin/tilewright", TILEWRIGHT)
        (tmp_path / unit.name).write_text(text)
    (tmp_path / "tilewright-worker@1.service").symlink_to("tilewright-worker@.service")
    names = ["tilewright-server.service", "tilewright-worker@1.service"]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stderr.strip() and not result.stdout.strip(), result


# -- scripts/cluster.sh -------------------------------------------------------------------------------------------


def processes_with(marker: str) -> list[int]:
    """Ids of the processes whose environment holds `marker` (every process the cluster script starts)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def test_cluster_script_end_to_end(tmp_path, testdata):
    state = tmp_path / "state"
    out = tmp_path / "cluster.out"
    env = clean_env(TILEWRIGHT=TILEWRIGHT, CLUSTER_STATE=str(state), CLUSTER_WORKERS="2")
    with open(out, "wb") as handle:
        script = subprocess.Popen(
            [str(REPO / "scripts" / "cluster.sh")], env=env, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        ready = wait_until(
            lambda: script.poll() is not None or re.search(r"cluster: ready: (http://\S+)", out.read_text()),
            90,
            "the cluster",
            interval=0.5,
        )
        assert script.poll() is None, out.read_text()
        url = ready.group(1)
        slide = testdata("svs/cmu-1-small-region.svs")
        with httpx.Client(base_url=url, timeout=30) as client:
            with open(slide, "rb") as body:
                created = client.post("/images?collection=demo", files={"file": (slide.name, body)})
            assert created.status_code == 201, created.text
            image, job_id = created.json()["image"], created.json()["job"]["id"]
            job = wait_until(
                lambda: (j := client.get(f"/jobs/{job_id}").json())["state"] in ("succeeded", "failed") and j,
                60,
                "the conversion",
                interval=0.3,
            )
            assert job["state"] == "succeeded", job
            # it ran on a worker (the server runs none: celery executor, no fallback)
            ran_on = [n for n in (1, 2) if job_id in (state / f"worker{n}.log").read_text()]
            assert len(ran_on) == 1 and job_id not in (state / "server.log").read_text()
            dzi = client.get(f"/images/{image['id']}.dzi")
            assert dzi.status_code == 200 and b"<Image" in dzi.content
            published = next(u for u in job["outputs"]["urls"] if u.endswith(".dzi"))
            tile = client.get(published.removesuffix(".dzi") + "_files/0/0_0.jpeg")
            assert tile.status_code == 200 and tile.content[:2] == b"\xff\xd8"
        started = [int(line.split()[0]) for line in (state / "pids").read_text().splitlines()]
        assert len(started) == 5  # postgres, rabbitmq, server, 2 workers
        assert processes_with(f"CLUSTER_STATE={state}")
    finally:
        if script.poll() is None:
            os.kill(script.pid, signal.SIGTERM)  # the script's stop: everything it started, in order
        code = script.wait(timeout=60)
    assert code == 143, out.read_text()[-2000:]
    assert "cluster: stopped" in out.read_text()
    assert not processes_with(f"CLUSTER_STATE={state}")  # no worker, server, beam, epmd or postgres left
    for pid in started:
        assert not Path(f"/proc/{pid}").exists()
