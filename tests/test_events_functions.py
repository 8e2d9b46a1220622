"""The Azure Functions blob-trigger pipeline (Pillow) tilewright replaces, as its readers see it: with
TILEWRIGHT_EVENT_RECIPE=azure-functions an event for an uploaded JPEG gives exactly that pipeline's blobs
(`thumbnails/small|medium|large/{name}`, `optimized/{name}`, `watermarked/{name}`, `metadata/{name}.json`),
at the pixel sizes Pillow gives, with its metadata document key for key. On every real store: Azurite (an
Event Grid BlobCreated event), moto's S3 server (an S3 notification) and a local folder (the watcher)."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime

import pytest
import pyvips
from fastapi.testclient import TestClient
from PIL import Image

from services import finished
from test_events import eventgrid_event, upload
from tilewright.config import Settings
from tilewright.events.watch import poll
from tilewright.recipes import RecipeError, load_recipe, parse_recipe
from tilewright.server import create_app
from tilewright.storage import open_url

PHOTO = "jpeg-png/2569067123_aca715a2ee_o.jpg"
NAME = "photos/2569067123_aca715a2ee_o.jpg"  # the Functions `{name}`: the path inside the uploads container
CONTAINERS = ("thumbnails", "optimized", "watermarked", "metadata")
EXPECTED = {
    f"thumbnails/small/{NAME}",
    f"thumbnails/medium/{NAME}",
    f"thumbnails/large/{NAME}",
    f"optimized/{NAME}",
    f"watermarked/{NAME}",
    f"metadata/{NAME}.json",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory, azurite, moto_s3):
    data = tmp_path_factory.mktemp("functions")
    settings = Settings(
        data_dir=data,
        storage_root=data / "storage",
        azure_connection_string=azurite.connection_string,
        **{k[11:].lower(): v for k, v in moto_s3.env().items()},
        event_recipe="azure-functions",
        watermark_text="OneUptime",
        concurrency=2,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        c.settings = settings
        yield c


def pillow_size(path, box: int) -> list[int]:
    """What Pillow's `Image.thumbnail((box, box))` makes of the file: the size that pipeline wrote."""
    with Image.open(path) as image:
        image.thumbnail((box, box), Image.LANCZOS)
        return list(image.size)


def deliver(backend: str, client, azurite, moto_s3, testdata) -> tuple[str, list]:
    """Upload the photo to the `uploads` container of the backend and tell tilewright as that store would;
    -> (the store's URL scheme root, the per-event results)."""
    if backend == "azurite":
        url, etag = upload(azurite, "uploads", NAME, testdata(PHOTO))
        answer = client.post("/events/eventgrid", json=[eventgrid_event(url, etag)])
        return "az://", answer.json()["results"]
    if backend == "moto":
        s3 = moto_s3.client()
        try:
            s3.create_bucket(Bucket="uploads")
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        s3.upload_file(str(testdata(PHOTO)), "uploads", NAME)
        etag = s3.head_object(Bucket="uploads", Key=NAME)["ETag"].strip('"')
        record = {
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "uploads"}, "object": {"key": NAME, "eTag": etag}},
        }
        return "s3://", client.post("/events/s3", json={"Records": [record]}).json()["results"]
    root = client.settings.resolved_storage_root()
    (root / "uploads" / NAME).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(testdata(PHOTO), root / "uploads" / NAME)
    counts = poll(f"file://{root}/uploads", client.settings, client.app.state.executor, seen := {})
    assert counts["submitted"] == 1, counts
    job = next(
        j for j in client.get("/jobs", params={"kind": "recipe_blob"}).json() if "file://" in j["params"]["source"]
    )
    return f"file://{root}/", [{"status": "submitted", "job": job["id"], "seen": seen}]


@pytest.mark.parametrize("backend", ["azurite", "moto", "local"])
def test_an_event_for_a_jpeg_writes_the_functions_pipelines_blobs_sizes_and_metadata(
    backend, client, azurite, moto_s3, testdata
):
    root, results = deliver(backend, client, azurite, moto_s3, testdata)
    assert [r["status"] for r in results] == ["submitted"], results
    job = finished(client, results[0]["job"], 120)
    assert job["state"] == "succeeded", job["error"]
    assert job["kind"] == "recipe_blob" and job["outputs"]["recipe"] == "azure-functions"
    store, _ = open_url(f"{root}thumbnails/x", client.settings)

    written = {blob.key: blob for container in CONTAINERS for blob in store.list(container)}
    assert set(written) == EXPECTED  # exactly those blobs, in containers of those names
    assert [b.key for b in store.list("uploads")] == [f"uploads/{NAME}"]  # nothing written beside the upload
    original = testdata(PHOTO)
    sizes = {
        f"thumbnails/small/{NAME}": pillow_size(original, 150),
        f"thumbnails/medium/{NAME}": pillow_size(original, 300),
        f"thumbnails/large/{NAME}": pillow_size(original, 600),
        f"optimized/{NAME}": pillow_size(original, 1920),
        f"watermarked/{NAME}": [2725, 2225],
    }
    images = {}
    for key, size in sizes.items():
        data = store.read_bytes(key)
        assert data[:3] == b"\xff\xd8\xff", key  # JPEG, whatever the name says
        images[key] = pyvips.Image.new_from_buffer(data, "")
        assert [images[key].width, images[key].height] == size, key
    assert sizes[f"thumbnails/small/{NAME}"] == [150, 122]  # Pillow's rounding, not a guess
    # the watermark: white text, half opaque, in the bottom-right corner only
    source = pyvips.Image.new_from_file(str(original))
    marked = images[f"watermarked/{NAME}"]
    corner = (marked.crop(2000, 2000, 700, 200) - source.crop(2000, 2000, 700, 200)).abs().max()
    elsewhere = (marked.crop(0, 0, 700, 200) - source.crop(0, 0, 700, 200)).abs().avg()
    assert corner > 60 and elsewhere < 3

    metadata = json.loads(store.read_bytes(f"metadata/{NAME}.json"))
    assert list(metadata) == [
        "filename",
        "original_size",
        "format",
        "mode",
        "file_size_bytes",
        "processed_at",
        "thumbnail_small",
        "thumbnail_medium",
        "thumbnail_large",
        "optimized",
    ]
    assert metadata["filename"] == "2569067123_aca715a2ee_o.jpg"
    assert metadata["original_size"] == [2725, 2225] and metadata["format"] == "JPEG" and metadata["mode"] == "RGB"
    assert metadata["file_size_bytes"] == original.stat().st_size == 829183
    assert datetime.fromisoformat(metadata["processed_at"]).tzinfo is None  # datetime.utcnow().isoformat()
    for size in ("small", "medium", "large"):
        key = f"thumbnails/{size}/{NAME}"
        assert metadata[f"thumbnail_{size}"] == {"size": sizes[key], "file_size_bytes": written[key].size}
    optimized = written[f"optimized/{NAME}"].size
    assert metadata["optimized"] == {
        "size": sizes[f"optimized/{NAME}"],
        "file_size_bytes": optimized,
        "compression_ratio": round(829183 / optimized, 2),
    }
    assert not any(client.settings.work_root().iterdir()), "the job's temp files are removed"

    # what the pipeline writes never makes a job; the same upload again is the same job
    if backend == "azurite":
        url = f"{azurite.endpoint}/thumbnails/small/{NAME}"
        again = client.post("/events/eventgrid", json=[eventgrid_event(url, written[f"thumbnails/small/{NAME}"].etag)])
        assert (
            again.json()["results"][0]["status"] == "ignored"
            and "recipe writes" in again.json()["results"][0]["reason"]
        )
        url, etag = f"{azurite.endpoint}/uploads/{NAME}", store.info(f"uploads/{NAME}").etag
        assert (
            client.post("/events/eventgrid", json=[eventgrid_event(url, etag)]).json()["results"][0]["job"] == job["id"]
        )
    if backend == "local":
        assert poll(f"file://{client.settings.resolved_storage_root()}", client.settings, None, {})["submitted"] == 0


def test_a_blob_layout_names_every_output_or_none(tmp_path):
    settings = Settings(data_dir=tmp_path)
    recipe = load_recipe("azure-functions", settings)
    assert recipe.has_layout and recipe.metadata_blob == "metadata/{path}.json"
    half = {
        "outputs": [
            {"name": "a", "ops": ["thumbnail=10"], "format": "jpeg", "blob": "a/{path}"},
            {"name": "b", "ops": ["thumbnail=10"], "format": "jpeg"},
        ],
        "metadata": "",
    }
    with pytest.raises(RecipeError, match="none for b"):
        parse_recipe(half, "half", settings=settings)
    half["outputs"][1]["blob"] = "b/{nope}"
    with pytest.raises(RecipeError, match="bad blob template"):
        parse_recipe(half, "half", settings=settings)
    half["outputs"][1].update(blob="b/{path}", record=["size"])
    with pytest.raises(RecipeError, match="record is a field"):
        parse_recipe(half, "half", settings=settings)
    del half["outputs"][1]["record"]
    assert parse_recipe(half, "half", settings=settings).has_layout
    assert not load_recipe("default", settings).has_layout


def test_an_event_recipe_without_a_layout_publishes_one_folder_with_its_manifest(tmp_path, testdata):
    root = tmp_path / "storage"
    (root / "in").mkdir(parents=True)
    shutil.copy(testdata(PHOTO), root / "in" / "p.jpg")
    settings = Settings(data_dir=tmp_path / "data", storage_root=root, event_recipe="default")
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert poll(f"file://{root}/in", settings, c.app.state.executor, {})["submitted"] == 1
        job = c.get("/jobs", params={"kind": "recipe_blob"}).json()[0]
        job = finished(c, job["id"], 120)
    assert job["state"] == "succeeded", job["error"]
    out = root / "in" / "web-slides-dzi-output" / "p"
    manifest = json.loads((out / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} == {
        "thumbnail_small.jpg",
        "thumbnail_medium.jpg",
        "thumbnail_large.jpg",
        "optimized.jpg",
        "watermarked.jpg",
        "metadata.json",
    }
    assert json.loads((out / "metadata.json").read_text())["recipe"] == "default"


def test_the_layout_prefixes_follow_the_output_store(tmp_path):
    from tilewright.events.filters import accept

    settings = Settings(
        data_dir=tmp_path, event_recipe="azure-functions", output_store=f"az://derived{uuid.uuid4().hex[:4]}/x"
    )
    base = settings.output_store.split("://")[1]
    assert accept(f"{base}/thumbnails/small/a.jpg", settings) == (
        False,
        "inside a folder the azure-functions recipe writes",
    )
    assert accept("uploads/a.jpg", settings) == (True, "")
