"""The Azure Functions adapter, called with azure.functions' own EventGridEvent, InputStream and HttpRequest
types against a real Azurite: the same jobs as the HTTP routes, run inline, exactly once per blob version."""

from __future__ import annotations

import datetime
import json

import azure.functions as func
import pytest
import pyvips
from azure.functions.blob import InputStream

from tilewright.config import get_settings
from tilewright.jobs import store as jobs


@pytest.fixture
def functions(tmp_path, azurite, monkeypatch):
    monkeypatch.setenv("TILEWRIGHT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TILEWRIGHT_AZURE_CONNECTION_STRING", azurite.connection_string)
    get_settings.cache_clear()
    import tilewright.function_app as module

    container = azurite.service().get_container_client("funcs")
    if not container.exists():
        container.create_container()
    return module, container


def _upload(container, name, path):
    with open(path, "rb") as handle:
        blob = container.upload_blob(name, handle, overwrite=True)
    return f"{container.url}/{name}", blob.get_blob_properties().etag.strip('"')


def test_event_grid_trigger_runs_the_job_inline_once(functions, testdata):
    module, container = functions
    url, etag = _upload(container, "eg/slide.svs", testdata("svs/cmu-1-small-region.svs"))
    event = func.EventGridEvent(
        id="1",
        data={"url": url, "eTag": etag, "api": "PutBlob"},
        topic="/t",
        subject="/blobServices/default/containers/funcs/blobs/eg/slide.svs",
        event_type="Microsoft.Storage.BlobCreated",
        event_time=datetime.datetime.now(datetime.UTC),
        data_version="1",
    )
    module.on_event_grid(event)
    module.on_event_grid(event)  # redelivered: no second job
    settings = get_settings()
    found = jobs.list_jobs(settings, kind="convert_blob")
    assert len(found) == 1 and found[0]["state"] == "succeeded", found
    manifest = json.loads(container.download_blob("web-slides-dzi-output/slide/manifest.json").readall())
    assert manifest["source"]["etag"] == etag
    other = func.EventGridEvent(
        id="2",
        data={},
        topic="/t",
        subject="s",
        event_type="Microsoft.Storage.BlobDeleted",
        event_time=None,
        data_version="1",
    )
    module.on_event_grid(other)  # ignored
    bad = func.EventGridEvent(
        id="3",
        data={"url": "https://evil.example/x.svs", "eTag": "1"},
        topic="/t",
        subject="s",
        event_type="Microsoft.Storage.BlobCreated",
        event_time=None,
        data_version="1",
    )
    module.on_event_grid(bad)  # refused and logged, never raised
    assert len(jobs.list_jobs(settings, kind="convert_blob")) == 1


def test_blob_trigger_uses_the_same_job_key(functions, testdata):
    module, container = functions
    url, etag = _upload(container, "bt/other.svs", testdata("svs/cmu-1-small-region.svs"))
    stream = InputStream(data=b"", name="funcs/bt/other.svs", uri=url, length=0, blob_properties={"ETag": f'"{etag}"'})
    module.on_blob(stream)
    outcome = module.handle_blob(url, etag)  # as if Event Grid reported it too
    assert outcome["status"] == "duplicate"
    names = [b.name for b in container.list_blobs(name_starts_with="web-slides-dzi-output/other/")]
    assert "web-slides-dzi-output/other/manifest.json" in names and "web-slides-dzi-output/other/other.dzi" in names


def test_http_resize_route(functions, testdata):
    module, container = functions
    url, _etag = _upload(container, "rs/thumb.svs", testdata("svs/cmu-1-small-region.svs"))
    request = func.HttpRequest(method="GET", url="/api/resize", params={"url": url, "size": "128"}, body=b"")
    response = module.resize(request)
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    image = pyvips.Image.new_from_buffer(response.get_body(), "")
    assert max(image.width, image.height) == 128
    for params, status in (
        ({"url": url, "size": "0"}, 400),
        ({}, 400),
        ({"url": "https://evil.blob.core.windows.net/c/x.svs"}, 403),
        ({"url": f"{container.url}/rs/missing.svs"}, 404),
    ):
        response = module.resize(func.HttpRequest(method="GET", url="/api/resize", params=params, body=b""))
        assert response.status_code == status, (params, response.get_body())
        assert "detail" in json.loads(response.get_body())
