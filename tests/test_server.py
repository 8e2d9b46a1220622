"""The HTTP API against the real app (FastAPI TestClient, embedded executor with a real process pool):
every endpoint and its error paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import TESTDATA
from services import assert_error, finished, wait_until
from tilewright.config import Settings
from tilewright.jobs import store
from tilewright.server import create_app


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def client(data):
    settings = Settings(
        data_dir=data,
        input_roots=[str(TESTDATA), str(data / "in")],
        max_upload_bytes=3 * 2**20,
        concurrency=2,
        job_retry_backoff_seconds=0.1,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        c.settings = settings
        yield c


def test_health_docs_and_metrics(client):
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["queue"]["executor"] == "embedded"
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/jobs/{job_id}/events" in paths
    operation_ids = [op["operationId"] for methods in paths.values() for op in methods.values()]
    assert len(operation_ids) == len(set(operation_ids)), "each operation needs its own id (code generators)"
    assert "head" not in paths["/images/{image_id}.dzi"] and "get" in paths["/images/{image_id}.dzi"]
    text = client.get("/metrics").text
    assert 'tilewright_jobs{state="queued"}' in text and "tilewright_http_request_duration_seconds" in text


def test_405_names_every_method_the_path_answers(client):
    """A GET route and its HEAD twin (or a GET and a POST) are separate routes; the router named only the first."""
    for url, allowed in (
        ("/iiif/3/any/info.json", "GET, HEAD"),
        ("/images/any_files/0/0_0.jpeg", "GET, HEAD"),
        ("/jobs", "GET, POST"),
        ("/healthz", "GET"),
        ("/outputs/any/slide.dzi", "GET, HEAD"),  # StaticFiles' own answer
    ):
        refused = client.put(url)
        assert refused.status_code == 405 and refused.headers["allow"] == allowed, (url, refused.headers)
        assert refused.json()["error"] == "method not allowed"
        for method in allowed.split(", "):  # each one listed is routed (no 405)
            if method in ("GET", "HEAD"):
                assert client.request(method, url).status_code != 405, (method, url)


def test_upload_multipart_converts_and_serves_the_dzi(client, testdata):
    source = testdata("svs/cmu-1-small-region.svs")
    with open(source, "rb") as handle:
        response = client.post("/images?collection=slides", files={"file": ("slide one.svs", handle)})
    assert response.status_code == 201, response.text
    image, job = response.json()["image"], response.json()["job"]
    assert image["collection"] == "slides" and image["filename"] == "slide_one.svs"
    assert (image["width"], image["height"], image["size"]) == (2220, 2967, source.stat().st_size)
    assert finished(client, job["id"])["state"] == "succeeded"
    record = client.get(f"/images/{image['id']}").json()
    assert record["state"] == "succeeded"
    dzi_url = [u for u in record["urls"] if u.endswith(".dzi")][0]
    assert dzi_url == f"/outputs/slides/{image['id']}/slide.dzi"
    dzi = client.get(dzi_url)
    assert dzi.status_code == 200 and b"<Image" in dzi.content
    dynamic = client.get(f"/images/{image['id']}.dzi")  # the same type as the dynamic route's (not text/plain)
    assert dzi.headers["content-type"] == dynamic.headers["content-type"] == "application/xml"
    assert client.get(f"/outputs/slides/{image['id']}/slide_files/0/0_0.jpeg").status_code == 200
    assert client.get("/outputs/../../etc/passwd").status_code == 404


def test_upload_raw_body_and_the_same_upload_twice(client, testdata):
    body = testdata("jpeg-png/boxes.png").read_bytes()
    first = client.post("/images?filename=boxes.png&collection=raw&kind=tiff", content=body)
    assert first.status_code == 201, first.text
    again = client.post("/images?collection=raw&kind=tiff", content=body, headers={"X-Filename": "copy.png"})
    assert again.status_code == 200
    assert again.json()["image"]["id"] == first.json()["image"]["id"]
    assert again.json()["job"]["id"] == first.json()["job"]["id"]
    job = finished(client, first.json()["job"]["id"])
    assert job["state"] == "succeeded" and job["outputs"]["output"].endswith("slide.tiff")
    uploads = client.settings.resolved_upload_dir()
    assert len([p for p in uploads.iterdir() if p.name == first.json()["image"]["id"]]) == 1
    assert not [p for p in uploads.iterdir() if p.name.startswith(".incoming")]


def test_upload_errors(client, testdata, tmp_path):
    assert_error(client.post("/images?filename=notes.txt", content=b"hello"), 415, "unsupported file type")
    assert_error(client.post("/images?filename=fake.png", content=b"this is not a png at all" * 10), 415)
    assert_error(client.post("/images?filename=a.png", content=b""), 400, "empty upload")
    big = testdata("jpeg-png/PNG_2_RGB.png").read_bytes() + b"\0" * 2**20  # over the 3 MiB limit of this app
    assert_error(client.post("/images?filename=big.png", content=big), 413, "limit")
    assert_error(client.post("/images", files={"other": ("", b"")}, data={"collection": "x"}), 400)
    assert_error(
        client.post("/images?collection=../etc", content=b"x", headers={"X-Filename": "a.png"}),
        400,
        "invalid collection",
    )
    assert_error(client.post("/images?kind=gif&filename=a.png", content=b"x"), 400, "unknown output kind")
    assert not [p for p in client.settings.resolved_upload_dir().iterdir() if p.name.startswith(".incoming")]


def test_an_empty_recipe_is_a_plain_conversion_to_the_chosen_kind(tmp_path, testdata):
    """The page's "none" sends `recipe=` (empty): the chosen output kind is made, not the server's upload
    recipe; naming no recipe at all still runs TILEWRIGHT_UPLOAD_RECIPE."""
    settings = Settings(data_dir=tmp_path, upload_recipe="default", concurrency=1)
    body = testdata("jpeg-png/boxes.png").read_bytes()
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        chosen = c.post("/images?filename=boxes.png&collection=a&kind=iiif&recipe=", content=body).json()
        assert (chosen["job"]["kind"], chosen["job"]["params"]["kind"]) == ("convert", "iiif")
        form = c.post("/images?collection=b&kind=tiff", files={"file": ("boxes.png", body)}, data={"recipe": ""})
        assert (form.json()["job"]["kind"], form.json()["job"]["params"]["kind"]) == ("convert", "tiff")
        configured = c.post("/images?filename=boxes.png&collection=c", content=body).json()
        assert (configured["job"]["kind"], configured["job"]["params"]["recipe"]) == ("recipe", "default")
        done = finished(c, chosen["job"]["id"])
        assert done["state"] == "succeeded" and done["outputs"]["kind"] == "iiif"
        assert (settings.resolved_output_root() / done["outputs"]["output"] / "info.json").is_file()
        for job in (form.json()["job"], configured["job"]):
            assert finished(c, job["id"])["state"] == "succeeded"


def test_job_json_shows_paths_relative_to_their_roots(client, testdata):
    """The API (served with CORS `*`) never shows where the server keeps files; the job store still records
    the absolute paths the jobs read."""
    hidden = [str(client.settings.data_dir.resolve()), str(TESTDATA.resolve())]

    def no_server_paths(text: str) -> None:
        assert not [h for h in hidden if h in text], text

    created = client.post(
        "/images?filename=boxes.png&collection=rel", content=testdata("jpeg-png/boxes.png").read_bytes()
    )
    no_server_paths(created.text)
    image_id, job_id = created.json()["image"]["id"], created.json()["job"]["id"]
    assert created.json()["job"]["params"]["input"] == f"{image_id}/boxes.png"  # under the upload folder
    done = finished(client, job_id)
    assert done["outputs"]["output"] == f"rel/{image_id}/slide.dzi"  # under the output root
    assert done["retryable"] is False
    for path in ("/jobs?limit=1000", f"/jobs/{job_id}", "/images?limit=1000", f"/images/{image_id}"):
        response = client.get(path)
        assert response.status_code == 200
        no_server_paths(response.text)
    with client.stream("GET", f"/jobs/{job_id}/events") as stream:
        events = "".join(stream.iter_text())
    assert "event: end" in events
    no_server_paths(events)
    recorded = store.get(client.settings, job_id)
    assert recorded["params"]["input"] == str(client.settings.resolved_upload_dir() / image_id / "boxes.png")
    assert recorded["outputs"]["output"] == str(client.settings.resolved_output_root() / "rel" / image_id / "slide.dzi")

    # a bad input under an input root: its error names the file relative to that root, and no retry can help
    params = {"input": str(testdata("broken/truncated.jpg")), "collection": "rel"}
    failing = client.post("/jobs", json={"kind": "convert", "params": params})
    no_server_paths(failing.text)
    assert failing.json()["params"]["input"] == "broken/truncated.jpg"
    failed = finished(client, failing.json()["id"])
    assert failed["state"] == "failed" and failed["error_type"] == "InputError" and failed["retryable"] is False
    assert failed["error"].startswith("broken/truncated.jpg: image data is corrupt or truncated"), failed["error"]
    assert str(TESTDATA.resolve()) in store.get(client.settings, failed["id"])["error"]


def test_collections_list_get_and_delete(client, testdata):
    body = testdata("jpeg-png/boxes.png").read_bytes()
    created = client.post("/images?filename=boxes.png&collection=trash", content=body).json()
    image_id = created["image"]["id"]
    finished(client, created["job"]["id"])
    names = {c["name"]: c for c in client.get("/collections").json()}
    assert names["trash"]["images"] == 1
    listed = client.get("/images", params={"collection": "trash"}).json()
    assert [i["id"] for i in listed] == [image_id]
    assert client.get("/images", params={"collection": "nothing-here"}).json() == []
    output = client.settings.resolved_output_root() / "trash" / image_id
    assert output.is_dir()
    assert client.delete(f"/images/{image_id}").json() == {"deleted": image_id}
    assert not output.exists() and not (client.settings.resolved_upload_dir() / image_id).exists()
    assert_error(client.get(f"/images/{image_id}"), 404)
    assert_error(client.delete(f"/images/{image_id}"), 404)


def test_jobs_submit_idempotency_list_and_errors(client, testdata):
    params = {"input": str(testdata("svs/cmu-1-small-region.svs")), "kind": "iiif", "collection": "api"}
    first = client.post("/jobs", json={"kind": "convert", "params": params})
    assert first.status_code == 201 and first.headers["location"] == f"/jobs/{first.json()['id']}"
    again = client.post("/jobs", json={"kind": "convert", "params": params})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    keyed = client.post("/jobs", json={"kind": "convert", "params": params}, headers={"Idempotency-Key": "k-1"})
    assert keyed.status_code == 201 and keyed.json()["id"] != first.json()["id"]
    for job in (first.json(), keyed.json()):
        done = finished(client, job["id"])
        output = client.settings.resolved_output_root() / done["outputs"]["output"]  # shown relative to its root
        assert done["state"] == "succeeded" and (output / "info.json").is_file()
    listed = client.get("/jobs", params={"kind": "convert", "state": "succeeded"}).json()
    assert {first.json()["id"], keyed.json()["id"]} <= {j["id"] for j in listed}
    assert_error(client.get("/jobs", params={"state": "bogus"}), 400, "unknown state")
    assert_error(client.get("/jobs/nope"), 404, "no job")
    assert_error(client.post("/jobs", json={"kind": "explode", "params": {}}), 400, "unknown job kind")
    assert_error(client.post("/jobs", json={"kind": "convert", "params": {"input": "/etc/passwd"}}), 403, "outside")
    assert_error(client.post("/jobs", json={"kind": "convert", "params": {}}), 400, "needs an 'input'")
    assert_error(client.post("/jobs", json={"kind": "convert", "params": {**params, "tile_size": 7}}), 400)
    assert_error(
        client.post("/jobs", json={"kind": "import", "params": {"input": params["input"]}}), 400, "not a folder"
    )
    assert_error(client.post("/jobs", content=b"{not json", headers={"content-type": "application/json"}), 422)
    assert_error(client.post("/jobs", json={"params": {}}), 422, "kind")


def test_import_job(client, testdata):
    folder = client.settings.data_dir / "in" / "batch"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(testdata("jpeg-png/boxes.png"), folder / "boxes.png")
    shutil.copy(testdata("svs/cmu-1-small-region.svs"), folder / "sub" / "slide.svs")
    shutil.copy(testdata("broken/truncated.png"), folder / "broken.png")
    job = client.post("/jobs", json={"kind": "import", "params": {"input": str(folder), "collection": "batch"}})
    done = finished(client, job.json()["id"], timeout=60)
    assert done["state"] == "succeeded", done
    assert sorted(Path(p).name for p in done["outputs"]["converted"]) == ["boxes.dzi", "slide.dzi"]
    assert [Path(f["source"]).name for f in done["outputs"]["failed"]] == ["broken.png"]
    assert all((client.settings.resolved_output_root() / p).is_file() for p in done["outputs"]["converted"])


def test_cancel_retry_and_events(client):
    job = client.post("/jobs", json={"kind": "ping", "params": {"seconds": 1.5, "nonce": "events"}}).json()
    events = []
    with client.stream("GET", f"/jobs/{job['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
                if name == "end":
                    break
    progress = [e["progress"] for n, e in events if n == "progress"]
    assert events[-1][0] == "end" and events[-1][1]["state"] == "succeeded"
    assert any(0 < p < 1 for p in progress) and progress == sorted(progress)
    assert_error(client.post(f"/jobs/{job['id']}/cancel"), 409, "already succeeded")
    assert_error(client.post(f"/jobs/{job['id']}/retry"), 409, "only failed or cancelled")
    assert_error(client.post("/jobs/nope/cancel"), 404)
    assert_error(client.post("/jobs/nope/retry"), 404)
    assert_error(client.get("/jobs/nope/events"), 404)

    slow = client.post("/jobs", json={"kind": "ping", "params": {"seconds": 60, "nonce": "cancel"}}).json()
    wait_until(lambda: client.get(f"/jobs/{slow['id']}").json()["state"] == "running", 30, "running")
    assert client.post(f"/jobs/{slow['id']}/cancel").json()["cancel_requested"] is True
    assert finished(client, slow["id"], timeout=10)["state"] == "cancelled"
    retried = client.post(f"/jobs/{slow['id']}/retry")
    assert retried.status_code == 200 and retried.json()["state"] in ("queued", "running")
    wait_until(lambda: client.get(f"/jobs/{slow['id']}").json()["state"] == "running", 30, "running again")
    client.post(f"/jobs/{slow['id']}/cancel")
    assert finished(client, slow["id"], timeout=10)["state"] == "cancelled"


def test_write_endpoints_need_the_token_when_set(tmp_path, testdata):
    settings = Settings(data_dir=tmp_path, api_token="s3cret", concurrency=1)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        body = {"kind": "ping", "params": {}}
        assert_error(client.post("/jobs", json=body), 401, "Bearer")
        assert_error(client.post("/jobs", json=body, headers={"Authorization": "Bearer wrong"}), 401)
        assert_error(client.post("/images?filename=a.png", content=b"x"), 401)
        assert_error(client.delete("/images/" + "0" * 32), 401)
        ok = client.post("/jobs", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 201
        assert client.get("/jobs").status_code == 200 and client.get(f"/jobs/{ok.json()['id']}").status_code == 200
        assert "s3cret" not in client.get("/readyz").text


def test_storage_not_writable_makes_readyz_fail(tmp_path):
    settings = Settings(data_dir=tmp_path, concurrency=1)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        shutil.rmtree(settings.resolved_upload_dir())
        settings.resolved_upload_dir().write_text("a file where a folder should be")
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["storage_uploads"]["ok"] is False
