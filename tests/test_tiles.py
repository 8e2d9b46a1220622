"""Tile serving over HTTP (the package server/tiles/), checked against pixels read through OpenSlide.

Every URL: dynamic and pre-built Deep Zoom, IIIF Image API 3 (info.json and image requests,
valid and invalid), thumbnail, associated images, regions and info; ETag/304; reads from
the best pyramid level; a slow render does not block the event loop.
"""

from __future__ import annotations

import io
import shutil
import threading
import time

import numpy as np
import openslide
import pytest
from fastapi.testclient import TestClient
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image as PILImage

from tilewright.config import Settings
from tilewright.db import session_scope
from tilewright.jobs.models import Image
from tilewright.server import create_app

SLIDES = {
    "cmu": "svs/cmu-1-small-region.svs",  # Aperio JPEG, one level + label/macro/thumbnail (native tiffload)
    "ndpi": "ndpi/test3-DAPI-2-(387).ndpi",  # Hamamatsu, 7 levels (OpenSlide bridge)
}
# plus "tiff": the generated 6000 x 5000 JPEG pyramidal TIFF of conftest (libvips reads it natively).
# (a generated TIFF keeps these tests independent of the codecs of any one test file.)


def add_image(settings: Settings, image_id: str, path, collection: str = "default", kind: str = "dzi") -> None:
    """An image record as an upload makes it (the tiles only need its id, collection and source path)."""
    with session_scope(settings) as session:
        session.add(
            Image(
                id=image_id,
                collection=collection,
                filename=path.name,
                path=str(path),
                size=path.stat().st_size,
                sha256="0" * 64,
                format="",
                width=0,
                height=0,
                kind=kind,
            )
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory, testdata, big_pyramid):
    settings = Settings(data_dir=tmp_path_factory.mktemp("tiles"), cache_bytes=64 * 2**20)
    app = create_app(settings)
    with TestClient(app) as client:
        client.get("/tiles/cache")  # the tile service exists from the start: a test may reach app.state.tiles first
        for image_id, relative in SLIDES.items():
            add_image(settings, image_id, testdata(relative))
        add_image(settings, "tiff", big_pyramid)
        yield client, settings, app


def pixels(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(PILImage.open(io.BytesIO(response.content)).convert("RGB")).astype(np.int16)


def as_array(image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int16)


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).mean())


# -- Deep Zoom ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served_configured_grid(tmp_path_factory, testdata, big_pyramid):
    """A server whose dynamic tiles use the configured Deep Zoom geometry (254/1), not the source's grid."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("tiles254"), tiles_follow_source=False)
    with TestClient(create_app(settings)) as client:
        for image_id, relative in SLIDES.items():
            add_image(settings, image_id, testdata(relative))
        add_image(settings, "tiff", big_pyramid)
        yield client, settings, None


@pytest.mark.parametrize(
    "image_id, grid",
    [
        ("cmu", (240, 0)),
        ("ndpi", (254, 1)),
        ("tiff", (256, 0)),  # tiled sources: their own tiles; NDPI: strips
        ("cmu", "configured"),
        ("ndpi", "configured"),
        ("tiff", "configured"),
    ],
)
def test_dynamic_dzi_matches_openslide_deepzoom(request, testdata, big_pyramid, image_id, grid):
    client, _settings, _app = request.getfixturevalue("served" if grid != "configured" else "served_configured_grid")
    tile_size, overlap = (254, 1) if grid == "configured" else grid
    slide = openslide.OpenSlide(str(testdata(SLIDES[image_id]) if image_id in SLIDES else big_pyramid))
    dz = DeepZoomGenerator(slide, tile_size=tile_size, overlap=overlap, limit_bounds=False)
    r = client.get(f"/images/{image_id}.dzi")
    assert r.status_code == 200 and r.headers["x-tile-source"] == "dynamic"
    w, h = slide.dimensions
    assert f'<Size Width="{w}" Height="{h}"/>' in r.text
    assert f'TileSize="{tile_size}"' in r.text and f'Overlap="{overlap}"' in r.text
    top = dz.level_count - 1
    cols, rows = dz.level_tiles[top]
    # full resolution (corner, middle, the ragged last tile), then lower levels read from smaller levels
    cases = [
        (top, 0, 0),
        (top, cols // 2, rows // 2),
        (top, cols - 1, rows - 1),
        (top - 1, 1, 1),
        (top - 2, 0, 0),
        (top - 3, 0, 1),
        (top - 5, 0, 0),
        (0, 0, 0),
    ]
    for level, col, row in cases:
        col, row = min(col, dz.level_tiles[level][0] - 1), min(row, dz.level_tiles[level][1] - 1)
        got = pixels(client.get(f"/images/{image_id}_files/{level}/{col}_{row}.png"))
        assert got.shape[1::-1] == dz.get_tile_dimensions(level, (col, row)), (level, col, row)
        tile = dz.get_tile(level, (col, row))
        if tile.size != got.shape[1::-1]:  # DeepZoomGenerator's PIL thumbnail() keeps the aspect: 1 px short
            tile = tile.resize(got.shape[1::-1], PILImage.LANCZOS)
        want = as_array(tile)
        limit = 1.0 if level == top else 4.0 if min(want.shape[:2]) >= 64 else 10.0  # 1x1: averaging differs
        if image_id == "tiff" and level != top:
            limit *= 2  # the generated pattern has hard edges every few pixels: resampling kernels differ most
        assert mean_diff(got, want) < limit, (image_id, level, col, row)
    jpeg = client.get(f"/images/{image_id}_files/{top}/0_0.jpeg")
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"
    assert mean_diff(pixels(jpeg), as_array(dz.get_tile(top, (0, 0)))) < (10 if image_id == "tiff" else 4)  # Q85
    webp = client.get(f"/images/{image_id}_files/{top}/0_0.webp")
    assert webp.headers["content-type"] == "image/webp" and webp.content[8:12] == b"WEBP"


def test_low_resolution_tiles_never_read_the_base_level(served):
    client, _settings, app = served
    app.state.tiles.handles.clear()  # fresh readers: nothing decoded yet
    assert client.get("/images/tiff_files/7/0_0.png").status_code == 200  # 1/64 scale -> smallest level
    assert client.get("/images/ndpi_files/7/0_0.png").status_code == 200  # 1/128 scale -> level 6 (1/64)
    for image_id in ("tiff", "ndpi"):
        path = str(app.state.tiles.record(image_id).path)  # record(): the 2 s cache may have expired
        handle = next(h for k, h in app.state.tiles.handles._open.items() if k[0] == path)
        assert 0 not in handle.reader._level_cache, f"{image_id}: a low-resolution tile decoded level 0"
        assert max(handle.reader._level_cache) == len(handle.reader.levels) - 1


def test_dzi_tile_errors_are_clean_4xx(served):
    client, _settings, _app = served
    for url, status in [
        ("/images/cmu_files/13/0_0.jpeg", 404),
        ("/images/cmu_files/12/99_0.jpeg", 404),
        ("/images/cmu_files/12/0_99.jpeg", 404),
        ("/images/cmu_files/12/0_0.gif", 400),
        ("/images/cmu_files/12/0_0.tiff", 400),
        ("/images/nosuch_files/0/0_0.jpeg", 404),
        ("/images/nosuch.dzi", 404),
        ("/images/bad%20id.dzi", 404),
        ("/images/cmu_files/x/0_0.jpeg", 404),
        ("/images/cmu_files/1/-1_0.jpeg", 404),
    ]:
        r = client.get(url)
        assert r.status_code == status, (url, r.status_code, r.text)
        assert r.headers["content-type"] == "application/json" and r.json()["detail"], url


def test_prebuilt_pyramid_is_served_from_disk(served, served_configured_grid, testdata):
    client, settings, _app = served
    from tilewright.convert import convert, make_options

    add_image(settings, "built", testdata(SLIDES["cmu"]), collection="pub")
    folder = settings.resolved_output_root() / "pub" / "built"
    dynamic_dzi = client.get("/images/built.dzi").text
    assert 'TileSize="240"' in dynamic_dzi  # dynamic tiles follow the SVS's own 240 px grid
    assert client.get("/images/built_files/12/3_4.jpeg").headers["x-tile-source"] == "dynamic"
    folder.mkdir(parents=True)
    convert(testdata(SLIDES["cmu"]), folder / "slide", "dzi", options=make_options("dzi", settings), settings=settings)
    _app.state.tiles.prebuilt.forget("built")  # (the server notices a publication within 2 s)
    r = client.get("/images/built.dzi")
    assert r.headers["x-tile-source"] == "prebuilt" and r.text.replace("'", '"').count("254") >= 1
    assert 'Width="2220"' in r.text and 'Height="2967"' in dynamic_dzi
    tile = client.get("/images/built_files/12/3_4.jpeg")
    assert tile.headers["x-tile-source"] == "prebuilt"
    assert tile.content == (folder / "slide_files" / "12" / "3_4.jpeg").read_bytes()
    again = client.get("/images/built_files/12/3_4.jpeg", headers={"If-None-Match": tile.headers["etag"]})
    assert again.status_code == 304
    # a format the pyramid was not built in is still rendered on the fly, on the grid of the .dzi served
    rendered = client.get("/images/built_files/12/3_4.png")
    assert rendered.headers["x-tile-source"] == "dynamic" and pixels(rendered).shape == pixels(tile).shape
    same_grid = served_configured_grid[0].get("/images/cmu_files/12/3_4.jpeg")  # dynamic on the 254/1 grid
    assert mean_diff(pixels(tile), pixels(same_grid)) < 3  # the same picture either way
    shutil.rmtree(folder)


def test_a_tile_url_means_one_tile_forever_or_is_not_kept(served, testdata):
    """The dynamic grid (the SVS's 240/0) is not the published one (254/1): the same tile URL names another
    tile once the pyramid is published, so until then it is sent `no-cache` (revalidated by its ETag),
    from the routes and from the fast path alike; a published tile keeps the long max-age."""
    client, settings, app = served
    add_image(settings, "later", testdata(SLIDES["cmu"]), collection="pub2")
    url = "/images/later_files/12/3_4.jpeg"
    before = client.get(url)
    assert before.headers["x-tile-source"] == "dynamic" and before.headers["x-tile-cache"] == "miss"
    assert before.headers["cache-control"] == "no-cache" != settings.tile_cache_control
    hit = client.get(url)  # answered by the fast path, with the same headers
    assert hit.headers["x-tile-cache"] == "hit" and hit.headers["cache-control"] == "no-cache"
    assert client.get(url, headers={"If-None-Match": hit.headers["etag"]}).headers["cache-control"] == "no-cache"
    assert client.get("/images/later.dzi").headers["cache-control"] == "no-cache"
    iiif_url = "/iiif/3/later/0,0,512,512/256,/0/default.jpg"  # its URL names the region: cacheable
    assert client.get(iiif_url).headers["cache-control"] == settings.tile_cache_control
    assert client.get(iiif_url).headers["cache-control"] == settings.tile_cache_control  # the fast path's
    from tilewright.convert import convert, make_options  # as the test above: convert is the heavy import

    folder = settings.resolved_output_root() / "pub2" / "later"
    folder.mkdir(parents=True)
    convert(testdata(SLIDES["cmu"]), folder / "slide", "dzi", options=make_options("dzi", settings), settings=settings)
    app.state.tiles.prebuilt.forget("later")  # (the server notices a publication within 2 s)
    after = client.get(url)
    assert after.headers["x-tile-source"] == "prebuilt" and after.content != before.content
    assert (
        after.headers["cache-control"] == settings.tile_cache_control
        and after.headers["etag"] != before.headers["etag"]
    )
    assert client.get(url, headers={"If-None-Match": after.headers["etag"]}).headers["cache-control"] == (
        settings.tile_cache_control
    )
    assert client.get("/images/later.dzi").headers["cache-control"] == "no-cache"
    shutil.rmtree(folder)


# -- IIIF ------------------------------------------------------------------------------------------
def test_iiif_info_json(served):
    client, _settings, _app = served
    r = client.get("/iiif/3/ndpi/info.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["id"] == "http://testserver/iiif/3/ndpi" and doc["type"] == "ImageService3"
    assert (doc["width"], doc["height"]) == (3968, 4864) and doc["profile"] == "level2"
    assert doc["tiles"][0]["scaleFactors"] == [1, 2, 4, 8, 16]
    ld = client.get("/iiif/3/ndpi/info.json", headers={"Accept": "application/ld+json"})
    assert ld.headers["content-type"].startswith("application/ld+json")
    base = client.get("/iiif/3/ndpi", follow_redirects=False)
    assert base.status_code == 303 and base.headers["location"] == "/iiif/3/ndpi/info.json"
    assert client.get("/iiif/3/nosuch/info.json").status_code == 404


def test_iiif_info_json_varies_on_accept(served):
    """Two representations at one URL: `Vary: Accept`, an ETag each (a 304 confirms only its own), and the
    Link headers of the spec: the compliance level as rel="profile" (Image API 3 §6), the JSON-LD context
    as rel="http://www.w3.org/ns/json-ld#context" only when the JSON is plain (JSON-LD 1.1 §6.1)."""
    client, _settings, _app = served
    url, ld_accept = "/iiif/3/cmu/info.json", {"Accept": "application/ld+json"}
    plain = client.get(url, headers={"Accept": "application/json", "Origin": "https://viewer.example"})
    ld = client.get(url, headers={**ld_accept, "Origin": "https://viewer.example"})
    assert plain.headers["content-type"] == "application/json"
    assert ld.headers["content-type"] == 'application/ld+json;profile="http://iiif.io/api/image/3/context.json"'
    for answer in (plain, ld):
        assert "Accept" in answer.headers["vary"] and answer.headers["access-control-allow-origin"] == "*"
        assert '<http://iiif.io/api/image/3/level2.json>;rel="profile"' in answer.headers["link"]
        assert 'context.json>;rel="profile"' not in answer.headers["link"]
    context_link = '<http://iiif.io/api/image/3/context.json>;rel="http://www.w3.org/ns/json-ld#context"'
    assert context_link in plain.headers["link"] and context_link not in ld.headers["link"]
    assert plain.headers["etag"] != ld.headers["etag"] and plain.json() == ld.json()
    again = client.get(url, headers={**ld_accept, "If-None-Match": ld.headers["etag"]})
    assert (
        again.status_code == 304 and "Accept" in again.headers["vary"] and again.headers["etag"] == ld.headers["etag"]
    )
    # the other representation: sent whole
    other = client.get(url, headers={"Accept": "application/json", "If-None-Match": ld.headers["etag"]})
    assert other.status_code == 200 and other.headers["content-type"] == "application/json"
    head = client.head(url, headers=ld_accept)
    assert head.headers["etag"] == ld.headers["etag"] and "Accept" in head.headers["vary"]


def test_iiif_images_match_openslide(served, testdata):
    client, _settings, _app = served
    slide = openslide.OpenSlide(str(testdata(SLIDES["ndpi"])))
    # a full-resolution tile: the same pixels
    got = pixels(client.get("/iiif/3/ndpi/512,1024,512,512/512,512/0/default.png"))
    assert mean_diff(got, as_array(slide.read_region((512, 1024), 0, (512, 512)))) < 0.5
    # a 1/4-scale tile: read from level 2 (downsample 4), exactly OpenSlide's pixels there
    got = pixels(client.get("/iiif/3/ndpi/1024,2048,2048,2048/512,512/0/default.png"))
    assert mean_diff(got, as_array(slide.read_region((1024, 2048), 2, (512, 512)))) < 0.5
    # a 1/6-scale tile: level 2 resized (compare with OpenSlide's level 2 resized by Pillow)
    got = pixels(client.get("/iiif/3/ndpi/0,0,3072,3072/512,/0/default.png"))
    want = slide.read_region((0, 0), 2, (768, 768)).convert("RGB").resize((512, 512), PILImage.LANCZOS)
    assert mean_diff(got, as_array(want)) < 3
    # full/max, square, pct, w,h, !w,h, pct size, rotation, mirroring, qualities, formats
    full = client.get("/iiif/3/ndpi/full/,608/0/default.png")
    assert mean_diff(pixels(full), as_array(slide.read_region((0, 0), 3, (496, 608)))) < 0.5
    square = pixels(client.get("/iiif/3/ndpi/square/62,/0/default.png"))
    assert square.shape == (62, 62, 3)
    pct = pixels(client.get("/iiif/3/ndpi/pct:50,50,50,50/pct:10/0/default.png"))
    assert pct.shape == (243, 198, 3)
    confined = pixels(client.get("/iiif/3/ndpi/full/!300,300/0/default.jpg"))
    assert confined.shape == (300, 245, 3)
    tile = pixels(client.get("/iiif/3/ndpi/0,0,496,608/124,152/0/default.png"))
    rot = pixels(client.get("/iiif/3/ndpi/0,0,496,608/124,152/90/default.png"))
    assert rot.shape == (124, 152, 3) and np.array_equal(rot, np.rot90(tile, k=-1))
    mirror = pixels(client.get("/iiif/3/ndpi/0,0,496,608/124,152/!0/default.png"))
    assert np.array_equal(mirror, tile[:, ::-1])
    assert pixels(client.get("/iiif/3/ndpi/0,0,496,608/124,152/!180/default.png")).shape == (152, 124, 3)
    assert client.get("/iiif/3/ndpi/0,0,496,608/124,152/45/default.png").status_code == 200
    gray = PILImage.open(io.BytesIO(client.get("/iiif/3/ndpi/0,0,496,608/124,152/0/gray.png").content))
    assert gray.mode == "L"
    bitonal = np.asarray(PILImage.open(io.BytesIO(client.get("/iiif/3/ndpi/full/124,/0/bitonal.png").content)))
    assert set(np.unique(bitonal)) <= {0, 255}
    assert client.get("/iiif/3/ndpi/full/124,/0/color.jpg").headers["content-type"] == "image/jpeg"
    assert client.get("/iiif/3/ndpi/full/124,/0/default.webp").headers["content-type"] == "image/webp"


def test_iiif_tiles_follow_the_source_grid_and_pass_stored_jpeg_through(served, tmp_path_factory, big_pyramid):
    """info.json advertises the source's tiles; asking for one returns the file's own JPEG (no re-encoding)."""
    client, settings, _app = served
    tiles = client.get("/iiif/3/tiff/info.json").json()["tiles"][0]
    assert (tiles["width"], tiles["height"]) == (256, 256)  # the TIFF's tiles, not iiif_tile_size
    assert client.get("/iiif/3/ndpi/info.json").json()["tiles"][0]["width"] == settings.iiif_tile_size  # strips
    from tilewright.formats import open_slide

    reader = open_slide(big_pyramid, settings)
    stored = reader.stored_jpeg_tile(1, 3, 2)  # level 1 = downsample 2: full-resolution 1536,1024,512,512
    url = "/iiif/3/tiff/1536,1024,512,512/256,/0/default.jpg"
    assert client.get(url).content == stored and client.get(url.replace("256,", "256,256")).content == stored
    # anything else is rendered: another quality, a mirror, another size, png
    for other in (
        "1536,1024,512,512/256,/0/gray.jpg",
        "1536,1024,512,512/256,/!0/default.jpg",
        "1536,1024,512,512/255,/0/default.jpg",
        "1536,1024,512,512/256,/0/default.png",
    ):
        assert client.get(f"/iiif/3/tiff/{other}").content != stored, other
    # switched off: the same tile re-encoded at TILEWRIGHT_QUALITY, the same pixels
    off = Settings(data_dir=tmp_path_factory.mktemp("nopass"), tile_passthrough=False, tiles_follow_source=False)
    with TestClient(create_app(off)) as other_client:
        add_image(off, "tiff", big_pyramid)
        assert other_client.get("/iiif/3/tiff/info.json").json()["tiles"][0]["width"] == off.iiif_tile_size
        rendered = other_client.get(url)
        assert rendered.status_code == 200 and rendered.content != stored
        assert pixels(rendered).shape == (256, 256, 3)
        lossless = other_client.get(url.replace(".jpg", ".png"))  # what the stored tile must decode to
        assert mean_diff(pixels(lossless), pixels(client.get(url))) < 1
    reader.close()


@pytest.mark.parametrize(
    "path",
    [
        "bad/max/0/default.jpg",
        "0,0,0,0/max/0/default.jpg",
        "99999,0,10,10/max/0/default.jpg",
        "full/0,/0/default.jpg",
        "full/99999,/0/default.jpg",
        "full/max/400/default.jpg",
        "full/max/x/default.jpg",
        "full/max/0/native.jpg",
        "full/max/0/default.gif",
        "full/max/0/default",
        "pct:200,0,1,1/max/0/default.jpg",
        "full/pct:0/0/default.jpg",
        "full/!,/0/default.jpg",
        "full/5000,5000/0/default.jpg",
        "full/^99999,/0/default.jpg",
        "0,0,10,10/,/0/default.jpg",
    ],
)
def test_iiif_bad_requests_are_400(served, path):
    client, _settings, _app = served
    r = client.get(f"/iiif/3/ndpi/{path}")
    assert r.status_code == 400, (path, r.status_code, r.text)
    assert r.json()["error"] == "bad request" and r.json()["detail"]


# -- thumbnail, associated, region, info ----------------------------------------------------------
def test_thumbnail(served, testdata):
    client, _settings, _app = served
    slide = openslide.OpenSlide(str(testdata(SLIDES["ndpi"])))
    r = client.get("/images/ndpi/thumbnail?size=200&format=png")
    got = pixels(r)
    assert max(got.shape[:2]) == 200
    want = slide.get_thumbnail((200, 200)).convert("RGB").resize((got.shape[1], got.shape[0]))
    assert mean_diff(got, as_array(want)) < 4
    assert client.get("/images/ndpi/thumbnail").status_code == 200  # default size
    png = client.get("/images/cmu/thumbnail?size=64&format=png")
    assert png.headers["content-type"] == "image/png"
    for query in ("size=0", "size=99999", "size=abc", "format=gif"):
        r = client.get(f"/images/cmu/thumbnail?{query}")
        assert 400 <= r.status_code < 500, query


def test_associated_images(served, testdata):
    client, _settings, _app = served
    slide = openslide.OpenSlide(str(testdata(SLIDES["cmu"])))
    for name in ("label", "macro", "thumbnail"):
        got = pixels(client.get(f"/images/cmu/associated/{name}?format=png"))
        assert mean_diff(got, as_array(slide.associated_images[name])) < 0.5, name
    assert client.get("/images/tiff/associated/label").status_code == 404
    assert client.get("/images/cmu/associated/secret").status_code == 404


def test_region(served, testdata):
    client, settings, _app = served
    slide = openslide.OpenSlide(str(testdata(SLIDES["ndpi"])))
    got = pixels(client.get("/images/ndpi/region?x=1000&y=2000&w=300&h=200&format=png"))
    assert mean_diff(got, as_array(slide.read_region((1000, 2000), 0, (300, 200)))) < 0.5
    got = pixels(client.get("/images/ndpi/region?x=1000&y=2000&w=300&h=200&level=3&format=png"))
    assert mean_diff(got, as_array(slide.read_region((1000, 2000), 3, (300, 200)))) < 0.5
    edge = pixels(client.get("/images/ndpi/region?x=3900&y=4800&w=100&h=100&format=png"))
    assert edge.shape == (100, 100, 3) and (edge[-10:, -10:] == 255).all()  # outside: background
    for query in (
        "x=0&y=0&w=5000&h=5000",
        "x=0&y=0&w=10&h=10&level=7",
        "x=0&y=0&w=0&h=10",
        "x=0&y=0&w=10",
        "x=a&y=0&w=10&h=10",
        "x=0&y=0&w=10&h=10&format=bmp",
    ):
        r = client.get(f"/images/ndpi/region?{query}")
        assert 400 <= r.status_code < 500 and r.json()["detail"], query


def test_info(served):
    client, _settings, _app = served
    doc = client.get("/images/cmu/info").json()
    assert (doc["width"], doc["height"]) == (2220, 2967) and doc["vendor"] == "aperio"
    assert doc["dzi"] == "/images/cmu.dzi" and doc["tiles"] == "dynamic" and "path" not in doc
    assert "/images/cmu/associated/label" in doc["associated"] and doc["mpp_x"] > 0
    assert doc["properties"]["openslide.vendor"] == "aperio"
    assert len(client.get("/images/ndpi/info").json()["levels"]) == 7
    assert client.get("/images/nosuch/info").status_code == 404


# -- HTTP caching -------------------------------------------------------------------------------------
def test_etag_and_304(served):
    client, settings, _app = served
    url = "/iiif/3/tiff/0,0,1024,1024/256,/0/default.jpg"
    first = client.get(url)
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == settings.tile_cache_control
    second = client.get(url)
    assert second.headers["x-tile-cache"] == "hit" and second.content == first.content
    assert second.headers["etag"] == etag
    r = client.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": f'W/"x", {etag}'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    # the same image spelled another way shares nothing wrongly: another size is another ETag
    assert client.get("/iiif/3/tiff/0,0,1024,1024/128,/0/default.jpg").headers["etag"] != etag
    for url in (
        "/images/tiff.dzi",
        "/images/tiff_files/13/0_0.jpeg",
        "/images/tiff/thumbnail?size=100",
        "/images/cmu/associated/label",
        "/images/tiff/region?x=0&y=0&w=64&h=64",
        "/iiif/3/tiff/info.json",
    ):
        tag = client.get(url).headers["etag"]
        assert client.get(url, headers={"If-None-Match": tag}).status_code == 304, url


def test_a_changed_source_file_is_reopened_under_a_new_etag(served, testdata, tmp_path):
    client, settings, app = served
    source = tmp_path / "changing.png"
    shutil.copyfile(testdata("jpeg-png/boxes.png"), source)  # 300 x 250
    add_image(settings, "changing", source)
    url = "/images/changing/thumbnail?size=64&format=png"
    before = client.get(url)
    assert before.status_code == 200 and client.get(url).headers["x-tile-cache"] == "hit"
    opened = app.state.tiles.handles.opened
    shutil.copyfile(testdata("jpeg-png/gradients-rgb8.png"), source)  # 1000 x 1000
    app.state.tiles.records.pop("changing")  # as when the record's 2 s lifetime ends
    after = client.get(url)
    assert after.status_code == 200 and after.headers["x-tile-cache"] == "miss"
    assert after.headers["etag"] != before.headers["etag"] and after.content != before.content
    assert pixels(after).shape[:2] == (64, 64) and app.state.tiles.handles.opened == opened + 1
    assert client.get(url, headers={"If-None-Match": before.headers["etag"]}).status_code == 200


def test_cached_tiles_are_answered_before_routing_with_the_same_headers(served):
    """A cache hit is answered by fastpath.CachedTiles: same bytes, type, ETag, CORS, Link, and it is counted."""
    client, _settings, _app = served
    cases = [
        ("/iiif/3/tiff/1024,0,1024,1024/256,/0/gray.png", "image/png"),
        ("/images/tiff_files/12/1_1.webp", "image/webp"),
    ]
    for url, media in cases:
        first = client.get(url, headers={"Origin": "https://viewer.example"})
        assert first.status_code == 200 and first.headers["x-tile-cache"] == "miss"
        hit = client.get(url, headers={"Origin": "https://viewer.example"})
        assert hit.headers["x-tile-cache"] == "hit" and hit.content == first.content
        for name in ("content-type", "etag", "cache-control", "access-control-allow-origin", "link", "x-tile-source"):
            assert hit.headers.get(name) == first.headers.get(name), name
        assert hit.headers["content-type"] == media and int(hit.headers["content-length"]) == len(hit.content)
        assert client.get(url, headers={"If-None-Match": hit.headers["etag"]}).status_code == 304
        head = client.head(url)  # `curl -I`: the same headers, no body
        assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == hit.headers["etag"]
        assert head.headers["content-length"] == hit.headers["content-length"]
    for url in (
        "/images/cmu.dzi",
        "/iiif/3/cmu/info.json",
        "/images/cmu/thumbnail?size=64",
        "/images/cmu/associated/label",
        "/images/cmu/region?x=0&y=0&w=8&h=8",
        "/images/cmu_files/9/0_0.jpeg",
        "/iiif/3/cmu/full/64,/0/default.jpg",
    ):
        head = client.head(url)
        assert head.status_code == 200 and head.content == b"" and head.headers["etag"], url
    # a bad request that looks like a tile still gets the route's 400, never a cached answer
    assert client.get("/iiif/3/tiff/1024,0,1024,1024/0,/0/gray.png").status_code == 400
    metrics = client.get("/metrics").text
    assert 'route="/iiif/3/{image_id}/{region}/{size}/{rotation}/{quality_format}",status="304"' in metrics
    assert 'route="/images/{image_id}_files/{level}/{col}_{row}.{fmt}",status="200"' in metrics
    assert ":int}" not in metrics  # rendered and fast-path tiles are counted under one route name


@pytest.mark.parametrize(
    "url",
    [
        "/iiif/3/tiff/2048,0,1024,1024/256,/0/default.png",
        "/images/tiff_files/11/0_1.png",
        "/images/cmu/thumbnail?size=96&format=png",
        "/images/cmu/region?x=8&y=8&w=64&h=64&format=png",
        "/images/cmu/associated/macro?format=webp",
    ],
)
def test_image_answers_honour_one_byte_range(served, url):
    """As /outputs does (RFC 9110 §14): a 206 for one range, a 416 past the end, the whole body otherwise.

    The first request of each URL is a miss (the routes answer), the later ones cached tiles (the fast
    path, for the tile URLs): both must give the same answers."""
    client, _settings, _app = served
    first = client.get(url, headers={"Range": "bytes=10-19"})
    assert first.status_code == 206 and first.headers["x-tile-cache"] == "miss", first.text
    whole = client.get(url)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    body, size, etag = whole.content, len(whole.content), whole.headers["etag"]
    assert first.content == body[10:20] and first.headers["content-range"] == f"bytes 10-19/{size}"
    for given, want in (
        ("bytes=10-19", (10, 19)),
        ("bytes=-5", (size - 5, size - 1)),
        (f"bytes={size - 3}-", (size - 3, size - 1)),
        (f"bytes=0-{size + 100}", (0, size - 1)),
    ):
        part = client.get(url, headers={"Range": given})
        assert part.status_code == 206 and part.content == body[want[0] : want[1] + 1], given
        assert part.headers["content-range"] == f"bytes {want[0]}-{want[1]}/{size}", given
        assert int(part.headers["content-length"]) == want[1] - want[0] + 1 and part.headers["etag"] == etag
        assert part.headers["content-type"] == whole.headers["content-type"]
    past = client.get(url, headers={"Range": f"bytes={size}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    for ignored in (
        {"Range": "bytes=0-1,5-6"},  # several ranges
        {"Range": "pages=1"},
        {"Range": "bytes=9-2"},
        {"Range": "bytes=0-9", "If-Range": '"another"'},  # the client holds another version
    ):
        answer = client.get(url, headers=ignored)
        assert answer.status_code == 200 and answer.content == body, ignored
    assert client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag}).status_code == 206
    head = client.head(url, headers={"Range": "bytes=0-9"})  # range handling is defined for GET only
    assert head.status_code == 200 and head.headers["accept-ranges"] == "bytes"
    assert client.get(url, headers={"Range": "bytes=0-9", "If-None-Match": etag}).status_code == 304


def test_cors(served):
    client, _settings, _app = served
    r = client.get("/iiif/3/cmu/info.json", headers={"Origin": "https://viewer.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    pre = client.options(
        "/images/cmu_files/0/0_0.jpeg",
        headers={"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET"},
    )
    assert pre.status_code == 200 and "GET" in pre.headers["access-control-allow-methods"]


def test_cors_can_be_restricted(tmp_path):
    settings = Settings(data_dir=tmp_path, cors_origins=["https://ok.example"])
    with TestClient(create_app(settings)) as client:
        ok = client.get("/healthz", headers={"Origin": "https://ok.example"})
        assert ok.headers["access-control-allow-origin"] == "https://ok.example"
        other = client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_a_slow_render_does_not_block_other_requests(served, big_pyramid):
    client, settings, _app = served
    slow_done = threading.Event()
    slow_status: list[int] = []

    def slow() -> None:  # a 4096-pixel PNG of the full base: hundreds of milliseconds of libvips work
        slow_status.append(client.get("/iiif/3/tiff/full/max/0/default.png").status_code)
        slow_done.set()

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.05)
    started = time.monotonic()
    answers = [client.get("/iiif/3/cmu/0,0,256,256/256,/0/default.jpg").status_code for _ in range(5)]
    quick = time.monotonic() - started
    was_running = not slow_done.is_set()
    thread.join(60)
    assert answers == [200] * 5 and slow_status == [200]
    if was_running:  # the small tiles came back while the big render was still going
        assert quick < 2.0
