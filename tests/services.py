"""Real services for the server and job tests: free ports, a generated slow slide, `tilewright serve`
and `tilewright worker` subprocesses, and a private `redis-server` on a loopback port.

Nothing here is mocked: each helper starts the real program and waits (polling, with a
timeout) until it answers; each fixture stops what it started, by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from tilewright.jobs.models import FINISHED

REPO = Path(__file__).resolve().parent.parent
TILEWRIGHT = str(Path(sys.executable).parent / "tilewright")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a service process, killing it if it does not exit within 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - e.g. connection refused while a server starts
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last error: {last_error})")


def make_slow_tiff(path: Path, size: int = 10000) -> Path:
    """A generated size x size tiled JPEG TIFF: converting it takes several seconds (long enough to kill)."""
    import pyvips

    x = pyvips.Image.xyz(size, size)
    band = ((x[0] * 7 + x[1] * 3) % 256).cast("uchar")
    rgb = band.bandjoin([(x[1] % 256).cast("uchar"), ((x[0] // 4) % 256).cast("uchar")]).copy(interpretation="srgb")
    rgb.tiffsave(str(path), tile=True, compression="jpeg", Q=80, tile_width=256, tile_height=256, bigtiff=True)
    return path


@pytest.fixture(scope="session")
def slow_tiff(tmp_path_factory) -> Path:
    return make_slow_tiff(tmp_path_factory.mktemp("slow") / "slow.tiff")


def clean_env(**values: str) -> dict[str, str]:
    """This environment without any TILEWRIGHT_* setting, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILEWRIGHT_") or k == "TILEWRIGHT_TESTDATA"}
    env.update(values)
    return env


class Process:
    """A subprocess in its own session, so SIGKILL can take it and its children at once."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log_handle = open(log, "ab")
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(log.parent),
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self, group: bool = True) -> None:
        """SIGKILL: the process (and with `group`, everything it started)."""
        if self.proc.poll() is None:
            if group:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
        self.proc.wait(timeout=10)
        self._log_handle.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log_handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_server(env: dict[str, str], port: int, log: Path) -> Process:
    server = Process([TILEWRIGHT, "serve", "--port", str(port)], env, log)
    try:
        wait_until(
            lambda: (
                httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
                or server.proc.poll() is not None
            ),
            90,
            "tilewright serve to be ready",
        )
    except AssertionError:
        server.stop()
        raise
    if server.proc.poll() is not None:
        raise AssertionError(f"tilewright serve exited: {server.output()}")
    return server


def start_worker(env: dict[str, str], log: Path, name: str, concurrency: int = 1) -> Process:
    worker = Process([TILEWRIGHT, "worker", "--concurrency", str(concurrency), "--name", f"{name}@%h"], env, log)
    wait_until(
        lambda: "ready." in log.read_text(errors="replace") or worker.proc.poll() is not None,
        60,
        f"celery worker {name} to be ready",
    )
    if worker.proc.poll() is not None:
        raise AssertionError(f"tilewright worker exited: {worker.output()}")
    return worker


class RedisServer:
    """A private redis-server; `kill()` takes it away (SIGKILL), `start()` brings it back on the same port."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: `apt-get install -y redis-server` (or `make test`)")
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
                "--protected-mode",
                "yes",
            ],
            stdout=open(self.folder / "redis.log", "ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: redis.Redis.from_url(self.url, socket_timeout=1).ping(), 20, "redis-server")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A private redis-server on a free loopback port (the Debian package; `make test` installs it)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def finished(client, job_id: str, timeout: float = 60) -> dict:
    """Poll an app's job until it reaches a final state."""
    return wait_until(
        lambda: (j := client.get(f"/jobs/{job_id}").json())["state"] in FINISHED and j, timeout, f"job {job_id}"
    )


def assert_error(response, status: int, text: str = "") -> dict:
    """A JSON error with this status whose detail mentions `text`, and never a traceback."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "detail"} and "Traceback" not in response.text
    assert text.lower() in body["detail"].lower(), body
    return body
