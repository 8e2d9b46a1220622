"""Events end to end against real peers: Azurite (Event Grid and CloudEvents payloads), moto's S3 server
(S3 notifications), the real app with its embedded executor (a spawn process pool), and a `tilewright serve`
subprocess killed mid-job. Each blob version makes exactly one job; a crashed job never leaves a manifest."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import pyvips
from fastapi.testclient import TestClient

from services import FINISHED, clean_env, finished, free_port, make_slow_tiff, start_server, wait_until
from tilewright.config import Settings
from tilewright.server import create_app

SLIDE = "svs/cmu-1-small-region.svs"


def eventgrid_event(url: str, etag: str, event_id: str | None = None, kind: str = "Microsoft.Storage.BlobCreated"):
    return {
        "id": event_id or str(uuid.uuid4()),
        "eventType": kind,
        "subject": "/blobServices/default/containers/x",
        "eventTime": "2026-01-01T00:00:00Z",
        "dataVersion": "1",
        "topic": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
        "data": {
            "api": "PutBlob",
            "eTag": etag,
            "contentLength": 1,
            "blobType": "BlockBlob",
            "url": url,
            "sequencer": "0000000000000000000000000000000000000000000000000",
        },
    }


@pytest.fixture(scope="module")
def client(tmp_path_factory, azurite, moto_s3):
    data = tmp_path_factory.mktemp("events")
    settings = Settings(
        data_dir=data,
        azure_connection_string=azurite.connection_string,
        s3_endpoint_url=moto_s3.endpoint,
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
        s3_region="us-east-1",
        concurrency=2,
        job_retry_backoff_seconds=0.1,
        storage_connections=8,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        c.settings = settings
        yield c


def upload(azurite, container: str, name: str, source: Path) -> tuple[str, str]:
    service = azurite.service()
    try:
        service.create_container(container)
    except Exception:  # noqa: BLE001 - already there
        pass
    with open(source, "rb") as handle:
        props = service.get_blob_client(container, name).upload_blob(handle, overwrite=True)
    return f"{azurite.endpoint}/{container}/{name}", props["etag"].strip('"')


def blob_names(azurite, container: str, prefix: str) -> dict[str, int]:
    client = azurite.service().get_container_client(container)
    return {b.name: b.size for b in client.list_blobs(name_starts_with=prefix)}


def test_eventgrid_blob_created_three_times_is_one_job_and_publishes_dzi_and_manifest(client, azurite, testdata):
    url, etag = upload(azurite, "slides", "incoming/cmu-1-small-region.svs", testdata(SLIDE))
    event = eventgrid_event(url, etag)
    answers = [client.post("/events/eventgrid", json=[event]) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200], answers[0].text
    statuses = [a.json()["results"][0]["status"] for a in answers]
    assert statuses == ["submitted", "duplicate", "duplicate"]
    ids = {a.json()["results"][0]["job"] for a in answers}
    assert len(ids) == 1
    job = finished(client, ids.pop(), 120)
    assert job["state"] == "succeeded", job["error"]
    out = "web-slides-dzi-output/cmu-1-small-region/"
    assert job["outputs"]["manifest"] == f"az://slides/{out}manifest.json"
    names = blob_names(azurite, "slides", out)
    assert f"{out}manifest.json" in names and f"{out}cmu-1-small-region.dzi" in names
    service = azurite.service().get_container_client("slides")
    manifest = json.loads(service.download_blob(f"{out}manifest.json").readall())
    assert (
        manifest["source"]["etag"] == etag
        and manifest["source"]["url"] == "az://slides/incoming/cmu-1-small-region.svs"
    )
    listed = {f"{out}{f['path']}": f["size"] for f in manifest["files"]}
    assert {k: v for k, v in names.items() if not k.endswith("manifest.json")} == listed
    tiles = [n for n in names if n.endswith(".jpeg")]
    assert len(tiles) == manifest["tiles"] > 50
    for name in tiles[:5] + tiles[-5:]:  # tiles decode
        image = pyvips.Image.new_from_buffer(service.download_blob(name).readall(), "")
        assert image.width > 0 and image.avg() > 0
    assert client.get("/storage/pyramid", params={"url": f"az://slides/{out}"}).json()["tiles"] == manifest["tiles"]
    # the same blob through the watcher's URL form and a CloudEvent: still the same job
    again = client.post("/events/eventgrid", json=[eventgrid_event(url, f'"{etag}"')]).json()["results"][0]
    assert again["status"] == "duplicate"
    # a changed blob (new etag) is processed again
    url2, etag2 = upload(azurite, "slides", "incoming/cmu-1-small-region.svs", testdata("svs/small.svs"))
    assert etag2 != etag
    newer = client.post("/events/eventgrid", json=[eventgrid_event(url2, etag2)]).json()["results"][0]
    assert newer["status"] == "submitted"
    assert finished(client, newer["job"], 120)["state"] == "succeeded"
    manifest2 = json.loads(service.download_blob(f"{out}manifest.json").readall())
    assert manifest2["source"]["etag"] == etag2
    assert set(blob_names(azurite, "slides", out)) == {f"{out}{f['path']}" for f in manifest2["files"]} | {
        f"{out}manifest.json"
    }  # leftovers of the older version are gone


def test_eventgrid_validation_key_batches_and_ignored_types(client, azurite, testdata):
    handshake = [
        {
            "id": "1",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "subject": "",
            "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
            "eventTime": "2026-01-01T00:00:00Z",
            "dataVersion": "1",
        }
    ]
    response = client.post("/events/eventgrid", json=handshake, headers={"aeg-event-type": "SubscriptionValidation"})
    assert response.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    other = eventgrid_event("x", "y", kind="Microsoft.Storage.BlobDeleted")
    response = client.post("/events/eventgrid", json=[other])
    assert response.status_code == 200 and response.json()["results"][0]["status"] == "ignored"
    # a batch: one slide and one file the filters skip (a tile in an output folder, a .txt)
    url, etag = upload(azurite, "batch", "a/slide.svs", testdata(SLIDE))
    text_url, text_etag = upload(azurite, "batch", "a/readme.txt", testdata("SOURCES.md"))
    tile_url, tile_etag = upload(azurite, "batch", "web-slides-dzi-output/x/x_files/0/0_0.tif", testdata(SLIDE))
    response = client.post(
        "/events/eventgrid",
        json=[eventgrid_event(url, etag), eventgrid_event(text_url, text_etag), eventgrid_event(tile_url, tile_etag)],
    )
    assert [r["status"] for r in response.json()["results"]] == ["submitted", "ignored", "ignored"]
    assert finished(client, response.json()["results"][0]["job"], 120)["state"] == "succeeded"


def test_events_key_is_checked_when_configured(tmp_path, azurite):
    settings = Settings(data_dir=tmp_path, azure_connection_string=azurite.connection_string, events_key="s3cret")
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        ping = [
            {"id": "1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {"validationCode": "v"}}
        ]
        assert c.post("/events/eventgrid", json=ping).status_code == 401
        assert c.post("/events/eventgrid?key=wrong", json=ping).status_code == 401
        assert c.post("/events/eventgrid?key=s3cret", json=ping).json() == {"validationResponse": "v"}
        assert c.post("/events/eventgrid", json=ping, headers={"aeg-sas-key": "s3cret"}).status_code == 200
        assert c.post("/events/s3", json={"Records": []}).status_code == 401


def test_bad_events_get_4xx_never_500(client, azurite, testdata):
    def check(response, status, text):
        assert response.status_code == status, response.text
        assert text.lower() in response.text.lower() and "Traceback" not in response.text

    check(client.post("/events/eventgrid", content=b"{not json"), 400, "not valid JSON")
    check(client.post("/events/eventgrid", content=b""), 400, "empty")
    check(client.post("/events/eventgrid", json=[{"hello": 1}]), 400, "Event Grid schema")
    check(
        client.post("/events/eventgrid", json=[{"eventType": "Microsoft.Storage.BlobCreated", "data": {}}]), 400, "url"
    )
    check(client.post("/events/eventgrid", content=b"[" + b" " * (2 * 2**20) + b"]"), 413, "over")
    # URLs outside the configured account: another host, another account path, a non-blob URL
    for url in (
        "https://evil.blob.core.windows.net/slides/a.svs",
        "http://169.254.169.254/latest/a.svs",
        f"{azurite.endpoint.replace('devstoreaccount1', 'otheraccount')}/slides/a.svs",
    ):
        check(client.post("/events/eventgrid", json=[eventgrid_event(url, "0x1")]), 403, "not in the configured")
    # a missing blob: with its etag -> a job that fails with the reason; without -> 404 now
    missing = f"{azurite.endpoint}/slides/nowhere/gone.svs"
    result = client.post("/events/eventgrid", json=[eventgrid_event(missing, "0x8D0")]).json()["results"][0]
    job = finished(client, result["job"], 120)
    assert job["state"] == "failed" and "does not exist" in job["error"]
    event = eventgrid_event(missing, "")
    check(client.post("/events/eventgrid", json=[event]), 404, "does not exist")
    # a corrupt slide: the job fails once with a reason
    url, etag = upload(azurite, "slides", "broken/broken.svs", testdata("broken/broken.svs"))
    result = client.post("/events/eventgrid", json=[eventgrid_event(url, etag)]).json()["results"][0]
    job = finished(client, result["job"], 120)
    assert job["state"] == "failed" and job["attempts"] == 1 and job["error"]
    check(client.post("/events/cloudevents", json={"type": "x"}), 400, "CloudEvent")
    check(client.post("/events/cloudevents", content=b"]]"), 400, "JSON")
    check(client.post("/events/s3", json={"Records": [{"eventName": "ObjectCreated:Put"}]}), 400, "s3")
    check(client.post("/events/s3", json={"nope": 1}), 400, "Records")
    check(client.get("/storage/pyramid", params={"url": "az://slides/not/there"}), 404, "no manifest")


def test_cloudevents_structured_binary_and_handshake(client, azurite, testdata):
    response = client.options("/events/cloudevents", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert response.status_code == 200 and response.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    url, etag = upload(azurite, "cloud", "in/ce.svs", testdata(SLIDE))
    data = eventgrid_event(url, etag)["data"]
    structured = {
        "specversion": "1.0",
        "type": "Microsoft.Storage.BlobCreated",
        "id": "ce-1",
        "source": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/dev",
        "subject": "/blobServices/default/containers/cloud/blobs/in/ce.svs",
        "time": "2026-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
    }
    first = client.post(
        "/events/cloudevents", content=json.dumps(structured), headers={"content-type": "application/cloudevents+json"}
    )
    assert first.status_code == 200, first.text
    assert first.json()["results"][0]["status"] == "submitted"
    binary = client.post(
        "/events/cloudevents",
        content=json.dumps(data),
        headers={
            "ce-specversion": "1.0",
            "ce-type": "Microsoft.Storage.BlobCreated",
            "ce-id": "ce-2",
            "ce-source": "/dev",
            "content-type": "application/json",
        },
    )
    assert binary.status_code == 200 and binary.json()["results"][0]["status"] == "duplicate"
    batch = client.post(
        "/events/cloudevents",
        content=json.dumps([structured, {**structured, "id": "3", "type": "other.type"}]),
        headers={"content-type": "application/cloudevents-batch+json"},
    )
    assert [r["status"] for r in batch.json()["results"]] == ["ignored", "duplicate"]
    assert finished(client, first.json()["results"][0]["job"], 120)["state"] == "succeeded"


def test_s3_notifications_to_moto(client, moto_s3, testdata):
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="scans")
    key = "in/my slide.svs"
    s3.upload_file(str(testdata(SLIDE)), "scans", key)
    etag = s3.head_object(Bucket="scans", Key=key)["ETag"].strip('"')
    record = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": "scans"}, "object": {"key": "in/my+slide.svs", "size": 1, "eTag": etag}},
    }
    answers = [
        client.post(
            "/events/s3",
            json={"EventName": "s3:ObjectCreated:Put", "Key": "scans/in/my slide.svs", "Records": [record]},
        )
        for _ in range(2)
    ]
    assert [a.json()["results"][0]["status"] for a in answers] == ["submitted", "duplicate"]
    job = finished(client, answers[0].json()["results"][0]["job"], 120)
    assert job["state"] == "succeeded", job["error"]
    names = (
        [o["Key"] for o in s3.list_objects_v2(Bucket="scans", Prefix="scans/")["Contents"]]
        if "Contents" in s3.list_objects_v2(Bucket="scans", Prefix="scans/")
        else []
    )
    out = "web-slides-dzi-output/my slide/"
    listed = s3.list_objects_v2(Bucket="scans", Prefix=out)
    names = [o["Key"] for o in listed.get("Contents", [])]
    assert f"{out}manifest.json" in names and f"{out}my slide.dzi" in names


def test_killed_worker_leaves_no_manifest_and_the_retry_publishes_a_complete_one(tmp_path, azurite):
    slide = make_slow_tiff(tmp_path / "big.tiff", size=5000)
    url, etag = upload(azurite, "killed", "in/big.tiff", slide)
    data = tmp_path / "data"
    env = clean_env(
        TILEWRIGHT_DATA_DIR=str(data), TILEWRIGHT_CONCURRENCY="1", TILEWRIGHT_STORAGE_CONNECTIONS="2", **azurite.env()
    )
    port = free_port()
    import httpx

    server = start_server(env, port, tmp_path / "serve1.log")
    try:
        answer = httpx.post(f"http://127.0.0.1:{port}/events/eventgrid", json=[eventgrid_event(url, etag)]).json()
        job_id = answer["results"][0]["job"]
        wait_until(
            lambda: (
                "uploading" in httpx.get(f"http://127.0.0.1:{port}/jobs/{job_id}").json()["stage"]
                and len(blob_names(azurite, "killed", "web-slides-dzi-output/big/")) > 20
            ),
            120,
            "upload to start",
        )
    finally:
        server.kill()  # the server and its pool process, mid-upload
    out = "web-slides-dzi-output/big/"
    partial = blob_names(azurite, "killed", out)
    assert partial and f"{out}manifest.json" not in partial  # tiles, but nothing that looks finished
    from tilewright.storage import open_url

    store, _ = open_url("az://killed/x", Settings(azure_connection_string=azurite.connection_string))
    assert store.read_manifest(f"killed/{out}") is None and store.verify_manifest(f"killed/{out}") == ["no manifest"]
    server = start_server(env, port, tmp_path / "serve2.log")
    try:
        job = wait_until(
            lambda: (j := httpx.get(f"http://127.0.0.1:{port}/jobs/{job_id}").json())["state"] in FINISHED and j,
            180,
            "the retried job",
        )
        assert job["state"] == "succeeded" and job["attempts"] == 2, job
    finally:
        server.stop()
    assert store.verify_manifest(f"killed/{out}") == []
    manifest = store.read_manifest(f"killed/{out}")
    assert manifest["source"]["etag"] == etag and manifest["job_id"] == job_id
