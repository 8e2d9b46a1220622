"""Pre-built pyramids in object storage (server/prebuilt.py, jobs/kinds/convert.py), end to end:
a real upload converted by the embedded job pool, published to Azurite or moto's S3 server (manifest
last), then served back over HTTP from the store; half-published pyramids, new versions, ETags and
tiles the manifest lacks. The store is read back with the vendors' own clients (azure-storage-blob, boto3).
"""

from __future__ import annotations

import io
import json
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from conftest import TESTDATA
from services import finished, wait_until
from tilewright.config import Settings
from tilewright.server import create_app
from tilewright.storage import open_url

SLIDE = "svs/cmu-1-small-region.svs"  # 2220 x 2967: Deep Zoom levels 0..12, 9 x 12 tiles at the top
TTL = 2.0  # the server's lookup cache (TileService.records)


class Blobs:
    """The published objects, read with the vendor's client (not tilewright's storage code)."""

    def __init__(self, backend: str, server, container: str) -> None:
        self.backend, self.server, self.container = backend, server, container
        if backend == "azurite":
            self.client = server.service().get_container_client(container)
        else:
            self.client = server.client()

    def get(self, key: str) -> bytes:
        if self.backend == "azurite":
            return self.client.download_blob(key).readall()
        return self.client.get_object(Bucket=self.container, Key=key)["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        if self.backend == "azurite":
            self.client.upload_blob(key, data, overwrite=True)
        else:
            self.client.put_object(Bucket=self.container, Key=key, Body=data)

    def delete(self, key: str) -> None:
        if self.backend == "azurite":
            self.client.delete_blob(key)
        else:
            self.client.delete_object(Bucket=self.container, Key=key)

    def names(self, prefix: str) -> set[str]:
        if self.backend == "azurite":
            return {b.name[len(prefix) :] for b in self.client.list_blobs(name_starts_with=prefix)}
        found = self.client.list_objects_v2(Bucket=self.container, Prefix=prefix).get("Contents", [])
        return {o["Key"][len(prefix) :] for o in found}


@pytest.fixture(scope="module", params=["azurite", "moto"])
def served(request, tmp_path_factory):
    """An app whose uploads are also published to an object store: az://C/pyramids or s3://C/pyramids
    (folders for import jobs go in its last input root, DATA_DIR/imports)."""
    server = request.getfixturevalue("azurite" if request.param == "azurite" else "moto_s3")
    container = f"tw{uuid.uuid4().hex[:12]}"
    scheme = "az" if request.param == "azurite" else "s3"
    if request.param == "azurite":
        credentials = {"azure_connection_string": server.connection_string}
    else:
        credentials = {k[11:].lower(): v for k, v in server.env().items()}
    data_dir = tmp_path_factory.mktemp(f"prebuilt-{request.param}")
    settings = Settings(
        data_dir=data_dir,
        input_roots=[str(TESTDATA), str(data_dir / "imports")],
        output_store=f"{scheme}://{container}/pyramids",
        concurrency=2,
        job_retry_backoff_seconds=0.1,
        **credentials,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.get("/tiles/cache")  # the tile service exists from the start: a test may reach app.state.tiles first
        yield client, settings, Blobs(request.param, server, container), f"{scheme}://{container}"


def upload(client, collection: str) -> tuple[str, dict]:
    """Upload the slide into `collection` and wait for its conversion: (image id, finished job)."""
    with open(TESTDATA / SLIDE, "rb") as handle:
        response = client.post(f"/images?collection={collection}", files={"file": ("slide.svs", handle)})
    assert response.status_code == 201, response.text
    job = finished(client, response.json()["job"]["id"], timeout=120)
    assert job["state"] == "succeeded", job["error"]
    return response.json()["image"]["id"], job


def drop_local_copy(settings: Settings, collection: str, image_id: str) -> Path:
    """Move the local copy aside (the store's is then the only one); returns where it went."""
    folder = settings.resolved_output_root() / collection / image_id
    aside = settings.data_dir / "aside" / collection / image_id
    aside.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(aside))
    return aside


def source_of(client, url: str, want: str, timeout: float = 4 * TTL) -> object:
    """GET url until its X-Tile-Source is `want` (the server notices a publication within the TTL)."""
    return wait_until(
        lambda: (r := client.get(url)).headers.get("x-tile-source") == want and r, timeout, f"{url} to be served {want}"
    )


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


def test_an_upload_is_published_to_the_store_and_served_from_it(served):
    client, settings, blobs, store_url = served
    image_id, job = upload(client, "demo")
    prefix = f"pyramids/demo/{image_id}/"
    stored = job["outputs"]["store"]
    assert stored["output"] == f"{store_url}/pyramids/demo/{image_id}"
    assert stored["dzi"] == f"{store_url}/{prefix}slide.dzi"
    assert stored["manifest"] == f"{store_url}/{prefix}manifest.json"
    manifest = json.loads(blobs.get(prefix + "manifest.json"))
    listed = {f["path"]: f for f in manifest["files"]}
    assert blobs.names(prefix) == set(listed) | {"manifest.json"} and stored["files"] == len(listed)
    assert manifest["image_id"] == image_id and manifest["collection"] == "demo" and manifest["kind"] == "dzi"
    local = settings.resolved_output_root() / "demo" / image_id
    assert {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()} == set(listed)  # both copies
    # the local copy is read first ...
    assert client.get(f"/images/{image_id}.dzi").headers["x-tile-source"] == "prebuilt"
    svc = client.app.state.tiles
    assert svc.published_dzi(svc.record(image_id)).source == "local"
    # ... and without it, the store's
    drop_local_copy(settings, "demo", image_id)
    svc.prebuilt.forget(image_id)
    dzi = client.get(f"/images/{image_id}.dzi")
    assert dzi.headers["x-tile-source"] == "prebuilt" and dzi.content == blobs.get(prefix + "slide.dzi")
    assert svc.published_dzi(svc.record(image_id)).source in ("az", "s3")
    for level, col, row in [(12, 0, 0), (12, 4, 5), (12, 8, 11), (11, 2, 3), (8, 0, 0), (0, 0, 0)]:
        name = f"slide_files/{level}/{col}_{row}.jpeg"
        tile = client.get(f"/images/{image_id}_files/{level}/{col}_{row}.jpeg")
        assert tile.status_code == 200 and tile.headers["x-tile-source"] == "prebuilt", name
        assert tile.headers["content-type"] == "image/jpeg" and tile.content == blobs.get(prefix + name), name
    assert client.get(f"/images/{image_id}/info").json()["tiles"] == "prebuilt"
    # a tile past the pyramid's edge is a 404, a format it was not built in is rendered
    assert client.get(f"/images/{image_id}_files/12/9_0.jpeg").status_code == 404
    png = client.get(f"/images/{image_id}_files/12/4_5.png")
    assert png.headers["x-tile-source"] == "dynamic" and png.headers["content-type"] == "image/png"
    # deleting the image removes the store's copy too
    deleted = client.delete(f"/images/{image_id}").json()
    assert deleted["store"]["url"] == f"{store_url}/pyramids/demo/{image_id}"
    assert deleted["store"]["removed"] == len(listed) + 1 and blobs.names(prefix) == set()


def test_etag_and_304_of_store_tiles(served, monkeypatch):
    client, settings, blobs, _store_url = served
    image_id, _job = upload(client, "etags")
    drop_local_copy(settings, "etags", image_id)
    url = f"/images/{image_id}_files/12/3_4.jpeg"
    first = client.get(url)
    assert first.headers["x-tile-source"] == "prebuilt"
    assert first.headers["cache-control"] == settings.tile_cache_control
    etag = first.headers["etag"]
    store = client.app.state.tiles.prebuilt.store_location()[0]
    reads: list[str] = []
    original = store.read_bytes
    monkeypatch.setattr(store, "read_bytes", lambda key: reads.append(key) or original(key))
    again = client.get(url)
    assert again.headers["etag"] == etag and again.content == first.content
    not_modified = client.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag and not_modified.headers["x-tile-source"] == "prebuilt"
    assert client.get(url, headers={"If-None-Match": f'W/"x", {etag}'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert not [k for k in reads if k.endswith(".jpeg")], "a second request and a 304 read no tile from the store"
    assert client.get(f"/images/{image_id}_files/12/3_5.jpeg").headers["etag"] != etag
    dzi = client.get(f"/images/{image_id}.dzi")
    assert client.get(f"/images/{image_id}.dzi", headers={"If-None-Match": dzi.headers["etag"]}).status_code == 304


def test_a_pyramid_without_manifest_is_not_published(served):
    client, settings, blobs, _store_url = served
    image_id, _job = upload(client, "half")
    drop_local_copy(settings, "half", image_id)
    prefix = f"pyramids/half/{image_id}/"
    # what a publication that died before its last step leaves: every tile and the .dzi, no manifest
    manifest = blobs.get(prefix + "manifest.json")
    blobs.delete(prefix + "manifest.json")
    assert "slide.dzi" in blobs.names(prefix)
    dzi = client.get(f"/images/{image_id}.dzi")
    assert dzi.status_code == 200 and dzi.headers["x-tile-source"] == "dynamic"
    assert 'TileSize="240" Overlap="0"' in dzi.text.replace('Overlap="0" TileSize="240"', 'TileSize="240" Overlap="0"')
    assert client.get(f"/images/{image_id}_files/12/4_5.jpeg").headers["x-tile-source"] == "dynamic"
    # the same place as the published tile 12/4_5 (254 px tiles, overlap 1), from the source
    tile = client.get(f"/images/{image_id}/region?x={4 * 254 - 1}&y={5 * 254 - 1}&w=256&h=256&format=jpg")
    assert client.get(f"/images/{image_id}/info").json()["tiles"] == "dynamic"
    # the manifest arrives: within the lookup TTL the pyramid is served
    blobs.put(prefix + "manifest.json", manifest)
    assert source_of(client, f"/images/{image_id}.dzi", "prebuilt").content == blobs.get(prefix + "slide.dzi")
    stored = source_of(client, f"/images/{image_id}_files/12/4_5.jpeg", "prebuilt")
    assert stored.content == blobs.get(prefix + "slide_files/12/4_5.jpeg")
    assert np.abs(pixels(stored.content) - pixels(tile.content)).mean() < 3  # the same picture either way


def test_a_new_version_is_picked_up_after_the_ttl(served, monkeypatch):
    client, settings, blobs, _store_url = served
    image_id, _job = upload(client, "versions")
    aside = drop_local_copy(settings, "versions", image_id)
    prefix = f"pyramids/versions/{image_id}/"
    url = f"/images/{image_id}_files/12/2_2.jpeg"
    old = client.get(url)
    assert old.headers["x-tile-source"] == "prebuilt" and old.content == blobs.get(prefix + "slide_files/12/2_2.jpeg")
    # the manifest is looked up once per TTL, not once per tile: only its etag (a HEAD) is checked again
    store = client.app.state.tiles.prebuilt.store_location()[0]
    heads: list[str] = []
    reads: list[str] = []
    original_info, original_read = store.info, store.read_bytes
    monkeypatch.setattr(store, "info", lambda key: heads.append(key) or original_info(key))
    monkeypatch.setattr(store, "read_bytes", lambda key: reads.append(key) or original_read(key))
    started = time.monotonic()
    for col in range(9):
        for row in range(4):
            assert client.get(f"/images/{image_id}_files/12/{col}_{row}.jpeg").headers["x-tile-source"] == "prebuilt"
    elapsed = time.monotonic() - started
    assert len(heads) <= 1 + elapsed / TTL, heads
    assert not [k for k in reads if k.endswith("manifest.json")], "an unchanged manifest is not read again"
    # a new version (one tile differs) is published over the old one, manifest last
    import pyvips

    changed = aside / "slide_files" / "12" / "2_2.jpeg"
    blank = pyvips.Image.black(256, 256, bands=3).new_from_image([200, 30, 30]).copy(interpretation="srgb")
    changed.write_bytes(blank.jpegsave_buffer(Q=85))
    target, key = open_url(settings.output_store, settings)
    target.publish_pyramid(aside, f"{key}/versions/{image_id}")
    new = wait_until(
        lambda: (r := client.get(url)).content == changed.read_bytes() and r, 4 * TTL, "the new version of the tile"
    )
    assert new.headers["x-tile-source"] == "prebuilt" and new.headers["etag"] != old.headers["etag"]
    assert client.get(url, headers={"If-None-Match": old.headers["etag"]}).status_code == 200
    assert client.get(f"/images/{image_id}_files/12/2_3.jpeg").headers["x-tile-source"] == "prebuilt"


def test_tiles_the_manifest_lacks_are_rendered(served):
    client, settings, blobs, _store_url = served
    image_id, _job = upload(client, "gaps")
    drop_local_copy(settings, "gaps", image_id)
    prefix = f"pyramids/gaps/{image_id}/"
    manifest = json.loads(blobs.get(prefix + "manifest.json"))
    manifest["files"] = [f for f in manifest["files"] if f["path"] != "slide_files/12/4_5.jpeg"]
    blobs.put(prefix + "manifest.json", json.dumps(manifest).encode())  # its blob is still there
    blobs.delete(prefix + "slide_files/12/5_5.jpeg")  # listed, but gone
    missing = source_of(client, f"/images/{image_id}_files/12/4_5.jpeg", "dynamic")
    assert missing.content != blobs.get(prefix + "slide_files/12/4_5.jpeg")  # rendered, not read
    assert np.abs(pixels(missing.content) - pixels(blobs.get(prefix + "slide_files/12/4_5.jpeg"))).mean() < 3
    gone = client.get(f"/images/{image_id}_files/12/5_5.jpeg")
    assert gone.status_code == 200 and gone.headers["x-tile-source"] == "dynamic"
    assert pixels(gone.content).shape == pixels(missing.content).shape
    assert client.get(f"/images/{image_id}_files/12/3_5.jpeg").headers["x-tile-source"] == "prebuilt"
    assert client.get(f"/images/{image_id}.dzi").headers["x-tile-source"] == "prebuilt"


def test_a_recipe_upload_is_published_to_the_store_too(served):
    """An upload that runs a recipe: every output (thumbnails, metadata.json, the slide's pyramid) lands in the
    store under COLLECTION/ID/, manifest last, and the pyramid is served from there."""
    client, settings, blobs, store_url = served
    with open(TESTDATA / SLIDE, "rb") as handle:
        response = client.post("/images?collection=recipes&recipe=default", files={"file": ("slide.svs", handle)})
    assert response.status_code == 201, response.text
    image_id = response.json()["image"]["id"]
    job = finished(client, response.json()["job"]["id"], timeout=180)
    assert job["state"] == "succeeded", job["error"]
    prefix = f"pyramids/recipes/{image_id}/"
    stored = job["outputs"]["store"]
    assert stored["output"] == f"{store_url}/pyramids/recipes/{image_id}" and stored["dzi"].endswith("/slide.dzi")
    names = blobs.names(prefix)
    assert {
        "thumbnail_small.jpg",
        "optimized.jpg",
        "watermarked.jpg",
        "metadata.json",
        "slide.dzi",
        "manifest.json",
    } <= names
    manifest = json.loads(blobs.get(prefix + "manifest.json"))
    assert manifest["kind"] == "recipe" and manifest["recipe"] == "default"
    assert {f["path"] for f in manifest["files"]} | {"manifest.json"} == names
    assert (
        blobs.get(prefix + "metadata.json")
        == (settings.resolved_output_root() / "recipes" / image_id / "metadata.json").read_bytes()
    )
    drop_local_copy(settings, "recipes", image_id)
    client.app.state.tiles.prebuilt.forget(image_id)
    tile = client.get(f"/images/{image_id}_files/12/1_1.jpeg")
    assert tile.headers["x-tile-source"] == "prebuilt" and tile.content == blobs.get(prefix + "slide_files/12/1_1.jpeg")


def test_an_import_job_publishes_its_whole_folder_to_the_store(served):
    """An import job (every image of a folder) lands in the store under COLLECTION/JOB_ID/, manifest last,
    beside its local copy; the manifest's source is the folder."""
    client, settings, blobs, store_url = served
    folder = Path(settings.input_roots[-1]) / "batch"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(TESTDATA / "jpeg-png" / "boxes.png", folder / "boxes.png")
    shutil.copy(TESTDATA / SLIDE, folder / "sub" / "slide.svs")
    shutil.copy(TESTDATA / "broken" / "truncated.png", folder / "broken.png")
    response = client.post("/jobs", json={"kind": "import", "params": {"input": str(folder), "collection": "batch"}})
    assert response.status_code == 201, response.text
    job = finished(client, response.json()["id"], timeout=180)
    assert job["state"] == "succeeded", job["error"]
    prefix = f"pyramids/batch/{job['id']}/"
    stored = job["outputs"]["store"]
    assert stored["output"] == f"{store_url}/pyramids/batch/{job['id']}"
    assert stored["manifest"] == f"{store_url}/{prefix}manifest.json"
    local = settings.resolved_output_root() / job["outputs"]["output"]  # shown relative to its root
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert {"boxes.dzi", "sub/slide.dzi", "sub/slide_files/12/4_5.jpeg"} <= files
    manifest = json.loads(blobs.get(prefix + "manifest.json"))
    assert {f["path"] for f in manifest["files"]} == files and blobs.names(prefix) == files | {"manifest.json"}
    assert stored["files"] == len(files) and stored["bytes"] == sum(f["size"] for f in manifest["files"])
    assert manifest["kind"] == "dzi" and manifest["collection"] == "batch" and manifest["job_id"] == job["id"]
    assert manifest["converted"] == ["boxes.dzi", "sub/slide.dzi"] and manifest["failed"] == 1
    inputs = [p for p in folder.rglob("*") if p.is_file()]
    assert manifest["source"] == {"name": "batch", "size": sum(p.stat().st_size for p in inputs), "files": 3}
    for name in ("boxes.dzi", "sub/slide.dzi", "sub/slide_files/12/4_5.jpeg"):
        assert blobs.get(prefix + name) == (local / name).read_bytes(), name
