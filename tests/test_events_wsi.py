"""The WSI Event Grid function (wsi-slides-dzi-processor) tilewright replaces: its own sample event, sent as
its README writes it, and what its operators rely on. A server with no Azure (or S3) settings answers 503
"not configured" (Event Grid retries a 5xx, never a 4xx) and makes no job; once configured, the same event
(its placeholders filled in, as the README says) converts the `.jpg` it names, since the default suffixes
are every format a reader declares, into `web-slides-dzi-output/` in the same container; the pyramid goes
up on parallel connections (AzCopy's role) and the job's temp files are removed."""

from __future__ import annotations

import json
import threading

from fastapi.testclient import TestClient

from services import finished
from test_events import upload
from tilewright.config import Settings
from tilewright.db import init_db
from tilewright.events.filters import accept, default_suffixes
from tilewright.events.sources import SOURCES
from tilewright.events.submit import submit_blob
from tilewright.formats import accepted_suffixes
from tilewright.server import create_app
from tilewright.storage import open_url

# the sample of the function's README ("3. Simulate an Event Grid Event"), character for character
SAMPLE_EVENT = """[
  {
    "id": "test-id",
    "eventType": "Microsoft.Storage.BlobCreated",
    "subject": "/blobServices/default/containers/your-container/blobs/your-image.jpg",
    "eventTime": "2025-06-27T00:00:00.000Z",
    "data": {
      "url": "https://<your-storage-account>.blob.core.windows.net/your-container/your-image.jpg",
      "api": "PutBlob",
      "contentType": "image/jpeg",
      "contentLength": 12345678,
      "blobType": "BlockBlob",
      "blobTier": "Hot",
      "metadata": {}
    },
    "dataVersion": "",
    "metadataVersion": "1"
  }
]
"""
PHOTO = "jpeg-png/2569067123_aca715a2ee_o.jpg"


def test_the_sample_event_on_a_server_with_no_azure_or_s3_settings_is_503_not_configured(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path)), raise_server_exceptions=False) as client:
        answer = client.post("/events/eventgrid", content=SAMPLE_EVENT, headers={"content-type": "application/json"})
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["error"] == "not configured" and "Traceback" not in answer.text
        assert (
            "TILEWRIGHT_AZURE_CONNECTION_STRING" in body["detail"] and "TILEWRIGHT_AZURE_ACCOUNT_NAME" in body["detail"]
        )
        assert body["results"][0]["type"] == "NotConfiguredError"
        # an S3 notification is refused alike: never sent to AWS with whatever credentials the machine has
        record = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "scans"}, "object": {"key": "a.svs"}}}
        answer = client.post("/events/s3", json={"Records": [record]})
        assert answer.status_code == 503 and answer.json()["error"] == "not configured", answer.text
        assert (
            "TILEWRIGHT_S3_ENDPOINT_URL" in answer.json()["detail"]
            and "TILEWRIGHT_S3_REGION" in answer.json()["detail"]
        )
        assert client.get("/jobs").json() == []  # nothing was submitted
        # the subscription handshake needs no store: Event Grid can subscribe before storage is set up
        ping = [
            {"id": "1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {"validationCode": "c"}}
        ]
        assert client.post("/events/eventgrid", json=ping).json() == {"validationResponse": "c"}


def test_an_s3_region_alone_is_configured_enough_for_aws(tmp_path):
    """On AWS with an instance role (the SDK's credential chain) the region is the one setting needed."""
    settings = Settings(data_dir=tmp_path, s3_region="eu-west-1")
    init_db(settings)
    outcome = submit_blob(settings, None, "s3://scans/in/a.svs", etag="5d41402abc4b2a76b9719d911017c592")
    assert outcome["status"] == "submitted" and outcome["url"] == "s3://scans/in/a.svs"  # recorded, not run


def test_the_sample_event_filled_in_converts_its_jpg_into_web_slides_dzi_output(tmp_path, azurite, testdata):
    url, _etag = upload(azurite, "your-container", "your-image.jpg", testdata(PHOTO))
    event = SAMPLE_EVENT.replace("https://<your-storage-account>.blob.core.windows.net", azurite.endpoint)
    assert url in event  # the README's instruction: replace the account (the rest is already a name)
    settings = Settings(data_dir=tmp_path, azure_connection_string=azurite.connection_string, storage_connections=4)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        answer = client.post("/events/eventgrid", content=event, headers={"content-type": "application/json"})
        assert answer.status_code == 200, answer.text
        result = answer.json()["results"][0]
        assert result["status"] == "submitted"  # not "ignored": .jpg is a format tilewright reads
        job = finished(client, result["job"], 120)
        assert job["state"] == "succeeded", job["error"]
        again = client.post("/events/eventgrid", content=event, headers={"content-type": "application/json"})
        assert again.json()["results"][0] == {**result, "status": "duplicate", "state": "succeeded"}
    out = "your-container/web-slides-dzi-output/your-image/"
    assert job["outputs"]["dzi"] == f"az://{out}your-image.dzi"
    store, _ = open_url(f"az://{out}", settings)
    assert (
        store.verify_manifest(out) == []
        and store.read_manifest(out)["source"]["url"] == "az://your-container/your-image.jpg"
    )
    assert not any(settings.work_root().iterdir()), "the downloaded blob and the local pyramid are removed"


def test_default_event_suffixes_are_every_readers_suffixes(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert default_suffixes(settings) == sorted(accepted_suffixes())
    assert {".jpg", ".png", ".svs", ".ndpi", ".dcm", ".mrxs"} <= set(default_suffixes(settings))
    assert accept("c/your-image.jpg", settings) == (True, "")
    narrowed = Settings(data_dir=tmp_path, event_suffixes=[".SVS"])  # still settable
    assert accept("c/your-image.jpg", narrowed)[0] is False and accept("c/a.svs", narrowed) == (True, "")
    sourced = Settings(data_dir=tmp_path, event_sources=[{"container": "c"}])  # a source naming no suffixes
    assert accept("c/x.png", sourced) == (True, "") and accept("c/x.txt", sourced)[0] is False


def test_event_routes_declare_every_status_they_answer(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        paths = client.get("/openapi.json").json()["paths"]
    for source in SOURCES:
        route = paths[f"/events/{source.name}"]
        assert {"200", "400", "401", "403", "404", "413", "503"} <= set(route["post"]["responses"]), source.name
        if source.handshake is not None:
            assert {"200", "401", "403"} <= set(route["options"]["responses"])
    assert {"200", "400", "403", "404", "503"} <= set(paths["/storage/pyramid"]["get"]["responses"])


def test_a_pyramid_goes_up_on_parallel_connections(tmp_path, azurite):
    """AzCopy's role in the function: many uploads at once. Three uploads wait for each other at a barrier: done
    one at a time they would never meet (the barrier times out and the publish fails)."""
    settings = Settings(data_dir=tmp_path, azure_connection_string=azurite.connection_string, storage_connections=4)
    store, _ = open_url("az://parallel/x", settings)
    folder = tmp_path / "pyramid"
    (folder / "p_files" / "0").mkdir(parents=True)
    for index in range(12):
        (folder / "p_files" / "0" / f"{index}_0.jpeg").write_bytes(b"tile %d" % index)
    (folder / "p.dzi").write_text("<Image/>")
    meeting = threading.Barrier(3, timeout=30)
    lock, threads = threading.Lock(), set()
    real_upload = store.upload_file

    def upload_file(local, key):
        with lock:  # the first upload of each of the first three threads waits for the other two
            name = threading.current_thread().name
            wait = name not in threads and len(threads) < 3
            threads.add(name)
        if wait:
            meeting.wait()  # one upload at a time: BrokenBarrierError after 30 s, and the publish fails
        real_upload(local, key)

    store.upload_file = upload_file  # the real upload, after noting which thread makes it
    manifest = store.publish_pyramid(folder, "parallel/web-slides-dzi-output/p", source={"etag": "e"})
    assert len(threads) >= 3
    assert manifest["file_count"] == 13 and store.verify_manifest("parallel/web-slides-dzi-output/p") == []
    assert json.loads(store.read_bytes("parallel/web-slides-dzi-output/p/manifest.json"))["source"] == {"etag": "e"}
