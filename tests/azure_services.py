"""Real storage peers for the storage and event tests: Azurite (Azure Blob Storage emulator, from npm) and
moto's S3 server, each on a free loopback port, stopped by pid when the session ends.

Azurite is installed with `npm install --prefix build/node azurite@3` when missing (`make test`
does it first). No MinIO server can be installed here, so moto's server mode is the S3 peer.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services import free_port, stop_process, wait_until

REPO = Path(__file__).resolve().parent.parent
NODE_PREFIX = REPO / "build" / "node"
AZURITE = NODE_PREFIX / "node_modules" / ".bin" / "azurite-blob"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEV_ACCOUNT = "devstoreaccount1"


def ensure_azurite() -> Path:
    """The azurite-blob launcher, installing azurite@3 from npm on first use (under a file lock)."""
    if AZURITE.exists():
        return AZURITE
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: Node 20 and npm are needed to run Azurite (apt-get install nodejs npm)")
    NODE_PREFIX.mkdir(parents=True, exist_ok=True)
    with open(NODE_PREFIX / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not AZURITE.exists():
            result = subprocess.run(
                [npm, "install", "--prefix", str(NODE_PREFIX), "--no-audit", "--no-fund", "azurite@3"],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if result.returncode != 0 or not AZURITE.exists():
                pytest.fail(f"npm install azurite@3 failed: {result.stderr[-2000:]}")
    return AZURITE


class Azurite:
    def __init__(self, folder: Path, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.folder = folder
        self.log = open(folder / "azurite.log", "wb")
        self.proc = subprocess.Popen(
            [
                str(ensure_azurite()),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--location",
                str(folder),
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.endpoint = f"http://127.0.0.1:{self.port}/{DEV_ACCOUNT}"
        self.connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )
        try:
            wait_until(
                lambda: (
                    self.proc.poll() is not None or httpx.get(self.endpoint + "?comp=list", timeout=1).status_code < 500
                ),
                60,
                "azurite to answer",
            )
        except AssertionError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise AssertionError(f"azurite exited: {(folder / 'azurite.log').read_text()[-2000:]}")

    def service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def env(self) -> dict[str, str]:
        return {"TILEWRIGHT_AZURE_CONNECTION_STRING": self.connection_string}

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


class MotoS3:
    """moto's server mode: a real HTTP S3 endpoint (in-memory) in a child process."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.log = open(folder / "moto.log", "wb")
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.endpoint = f"http://127.0.0.1:{self.port}"
        try:
            wait_until(
                lambda: self.proc.poll() is not None or httpx.get(self.endpoint, timeout=1).status_code < 500,
                60,
                "moto server to answer",
            )
        except AssertionError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise AssertionError("moto server exited")

    def env(self) -> dict[str, str]:
        return {
            "TILEWRIGHT_S3_ENDPOINT_URL": self.endpoint,
            "TILEWRIGHT_S3_ACCESS_KEY_ID": "testing",
            "TILEWRIGHT_S3_SECRET_ACCESS_KEY": "testing",
            "TILEWRIGHT_S3_REGION": "us-east-1",
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    server = Azurite(tmp_path_factory.mktemp("azurite"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory):
    server = MotoS3(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()
