"""Limits on by default, tried as a hostile client would (issue 13): a chain long enough to crash libvips,
request bodies far over the limit (declared, streamed, and never sent), an upload that stalls mid-body.

Each answer is a JSON 4xx, the server keeps serving, and nothing is left behind in uploads or work.
The socket tests talk to a real `tilewright serve` (uvicorn): what a proxy or a client on the network sees.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from services import TILEWRIGHT, assert_error, clean_env, free_port, start_server
from tilewright.config import Settings
from tilewright.ops import MAX_STEPS
from tilewright.server import create_app

SOURCE = "svs/cmu-1-small-region.svs"  # shared/testdata: a real slide for the upload that must still work


def test_a_chain_long_enough_to_crash_libvips_is_refused_and_the_server_lives_on(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", input_roots=[str(tmp_path)])
    body = {"images": [{"input": "0" * 32, "output": "x.png"}], "operations": ["resize=0.5"] * 1500}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        answer = client.post("/process", json=body)
        assert_error(answer, 400, f"at most {MAX_STEPS}")
        job = client.post("/jobs", json={"kind": "process", "params": body})
        assert_error(job, 400, f"at most {MAX_STEPS}")
        assert client.get("/healthz").status_code == 200
        schema = client.get("/openapi.json").json()["components"]["schemas"]
        assert schema["ProcessRequest"]["properties"]["operations"]["maxItems"] == MAX_STEPS  # the schema says so


def test_the_cli_refuses_the_long_chain_in_one_line(tmp_path, testdata):
    ops = [arg for _ in range(1500) for arg in ("--op", "resize=0.5")]
    run = subprocess.run(
        [
            TILEWRIGHT,
            "process",
            str(testdata("jpeg-png/2569067123_aca715a2ee_o.jpg")),
            "-o",
            str(tmp_path / "out"),
            *ops,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(TILEWRIGHT_DATA_DIR=str(tmp_path / "data")),
    )
    assert run.returncode == 2, run.stderr  # an input error, not a crash (139 was a segfault)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and f"at most {MAX_STEPS}" in lines[0], run.stderr


def test_json_bodies_over_the_limit_are_413_and_uploads_keep_their_own_limit(tmp_path, testdata):
    settings = Settings(data_dir=tmp_path / "data", max_request_body_bytes=10_000)
    big = {"kind": "ping", "params": {"padding": "x" * 20_000}}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert_error(client.post("/jobs", json=big), 413, "TILEWRIGHT_MAX_REQUEST_BODY_BYTES")

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(20):
                yield b" " * 1000

        streamed = client.post("/jobs", content=chunks(), headers={"content-type": "application/json"})
        assert_error(streamed, 413, "over the limit of 10000 bytes")
        # an upload (over 10 kB) is not a JSON body: TILEWRIGHT_MAX_UPLOAD_BYTES applies
        slide = testdata(SOURCE)
        with open(slide, "rb") as handle:
            upload = client.post("/images", files={"file": (slide.name, handle)})
        assert upload.status_code in (200, 201, 202), upload.text


def _raw(port: int, head: bytes, body: bytes = b"", wait: float = 30) -> bytes:
    """Send a request by hand (a header the body never lives up to), read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(head + body)
        answer = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        # the rest of the (small, JSON) body
        sock.settimeout(2)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    return answer


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("limits") / "data"
    port = free_port()
    env = clean_env(TILEWRIGHT_DATA_DIR=str(data), TILEWRIGHT_REQUEST_READ_TIMEOUT_SECONDS="1.5")
    server = start_server(env, port, data.parent / "serve.log")
    try:
        yield port, data
    finally:
        server.stop()


def test_a_declared_30_gb_json_body_is_refused_at_once(served):
    port, _ = served
    start = time.monotonic()
    head = b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 32212254720\r\n\r\n"
    answer = _raw(port, head, b'{"kind": ')
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"] == "too large" and "32212254720" in body["detail"]
    assert time.monotonic() - start < 10  # not waited for


def test_an_upload_that_stalls_mid_body_is_408_and_leaves_nothing(served, testdata):
    port, data = served
    payload = testdata(SOURCE).read_bytes()
    head = (
        f"POST /images?filename=stalled.svs HTTP/1.1\r\nHost: x\r\nContent-Length: {len(payload)}\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    answer = _raw(port, head, payload[: len(payload) // 3])  # a third of the body, then nothing
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert "stalled" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"]
    leftovers = list(Path(data).rglob(".incoming-*"))
    assert leftovers == []
    assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200


@pytest.mark.parametrize("path", ["/images", "/jobs"])
def test_a_huge_paging_offset_is_a_422_not_a_500(tmp_path, path):
    with TestClient(create_app(Settings(data_dir=tmp_path / "data")), raise_server_exceptions=False) as client:
        assert_error(client.get(path, params={"offset": "523673927991882204315648"}), 422, "offset")
        assert client.get(path, params={"offset": 2**31}).status_code == 200


def test_error_bodies_never_show_where_the_server_keeps_its_files(tmp_path, testdata):
    """Every damaged file of shared/testdata/broken/ through /resize and /process: a 4xx JSON error (or an
    image, for those libvips can still read) whose text never names the data folder."""
    data = (tmp_path / "data").resolve()
    broken = testdata("broken")
    settings = Settings(data_dir=data, input_roots=[str(broken)])
    files = sorted(p for p in broken.iterdir() if p.is_file())
    assert len(files) > 15
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for path in files:
            answers = [
                client.post("/resize?width=100", content=path.read_bytes()),
                client.post("/process", json={"images": [{"input": str(path), "output": "x.png"}], "operations": []}),
            ]
            for answer in answers:
                assert answer.status_code < 500, (path.name, answer.text)
                if answer.status_code >= 400:
                    assert answer.json()["detail"] and str(data) not in answer.text, (path.name, answer.text)
                    assert str(tmp_path) not in answer.text, (path.name, answer.text)


def test_a_nul_byte_in_any_path_is_a_400_not_a_500(tmp_path):
    """Found by tests/test_contract.py: `/storage/pyramid?url=...%00...` raised ValueError in the OS call."""
    settings = Settings(data_dir=tmp_path / "data", input_roots=[str(tmp_path)])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert_error(client.get("/storage/pyramid", params={"url": f"{tmp_path}/a\x00b"}), 400, "NUL")
        body = {"images": [{"input": f"{tmp_path}/a\x00.png", "output": "x.png"}], "operations": []}
        assert_error(client.post("/process", json=body), 400, "NUL")
        job = {"kind": "convert", "params": {"input": f"{tmp_path}/a\x00.svs"}}
        assert_error(client.post("/jobs", json=job), 400, "NUL")


def test_a_nul_byte_in_an_items_path_is_a_400(tmp_path):
    """Found by `make fuzz` (tests/test_contract.py with 300 examples): /items/ resolved the path itself."""
    settings = Settings(data_dir=tmp_path / "data", input_roots=[str(tmp_path)])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for item in ({"input": f"{tmp_path}/a\x00b.jpg", "output": "x.jpg"}, {"input": "x.jpg", "output": "a\x00.jpg"}):
            answer = client.post("/items/", json={"images": [item], "operations": []})
            assert answer.status_code < 500, answer.text
