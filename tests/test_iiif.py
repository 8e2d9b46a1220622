"""IIIF Image API 3 URL parsing (server/iiif.py): pure functions, valid and invalid requests; and the media
type info.json is served as (server/tiles/image_api.py), on a real app."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tilewright.config import Settings
from tilewright.db import session_scope
from tilewright.jobs.models import Image
from tilewright.server import create_app, iiif
from tilewright.server.iiif import IiifError
from tilewright.server.tiles import image_api

W, H = 2220, 2967
LIMITS = {"max_width": 16383, "max_height": 16383, "max_area": 4096 * 4096}


def parse(region="full", size="max", rotation="0", qf="default.jpg", width=W, height=H, **limits):
    return iiif.parse(region, size, rotation, qf, width, height, **{**LIMITS, **limits})


@pytest.mark.parametrize(
    "region, expected",
    [
        ("full", (0, 0, W, H)),
        ("square", (0, (H - W) // 2, W, W)),
        ("0,0,256,256", (0, 0, 256, 256)),
        ("2000,2900,1000,1000", (2000, 2900, 220, 67)),  # clipped to the image
        ("pct:0,0,100,100", (0, 0, W, H)),
        ("pct:50,50,50,50", (1110, 1483, 1110, 1484)),
        ("pct:10.5,0,1.5,.5", (233, 0, 34, 15)),
    ],
)
def test_regions(region, expected):
    assert iiif.parse_region(region, W, H) == expected


@pytest.mark.parametrize(
    "region",
    [
        "",
        "ful",
        "0,0,256",
        "0,0,0,10",
        "0,0,10,0",
        "-1,0,10,10",
        "2220,0,10,10",
        "0,2967,10,10",
        "pct:",
        "pct:0,0,0,10",
        "pct:101,0,10,10",
        "pct:a,b,c,d",
        "1e3,0,10,10",
        "0,0,256,256,1",
        "0x0,1,1,1",
        "99999999999,0,1,1",
    ],
)
def test_bad_regions(region):
    with pytest.raises(IiifError):
        iiif.parse_region(region, W, H)


@pytest.mark.parametrize(
    "size, expected",
    [
        ("max", (1000, 800)),
        ("500,", (500, 400)),
        (",400", (500, 400)),
        ("250,100", (250, 100)),
        ("!500,500", (500, 400)),
        ("pct:50", (500, 400)),
        ("^2000,", (2000, 1600)),
        ("^pct:150", (1500, 1200)),
        ("^!2000,2000", (2000, 1600)),
        ("!2000,2000", (1000, 800)),
    ],
)
def test_sizes(size, expected):
    assert iiif.parse_size(size, 1000, 800, **LIMITS) == expected


def test_max_respects_the_area_limit():
    w, h = iiif.parse_size("max", 10000, 10000, 16383, 16383, 4096 * 4096)
    assert w * h <= 4096 * 4096 and w == h == 4096
    w, h = iiif.parse_size("^max", 100, 50, 1000, 1000, 10**9)
    assert (w, h) == (1000, 500)


@pytest.mark.parametrize(
    "size",
    [
        "",
        "full",
        "0,",
        ",0",
        ",",
        "1001,",
        ",801",
        "1001,800",
        "pct:0",
        "pct:101",
        "pct:-5",
        "!500,",
        "!,500",
        "!0,0",
        "a,b",
        "^",
        "^^max",
        "max,",
        "50000,40000",
        "^20000,",
    ],
)
def test_bad_sizes(size):
    with pytest.raises(IiifError):
        iiif.parse_size(size, 1000, 800, **LIMITS)


def test_size_over_the_area_limit_is_refused():
    with pytest.raises(IiifError, match="maximum"):
        iiif.parse_size("5000,5000", 5000, 5000, 16383, 16383, 4096 * 4096)


@pytest.mark.parametrize(
    "rotation, expected",
    [
        ("0", (0.0, False)),
        ("90", (90.0, False)),
        ("!0", (0.0, True)),
        ("!270", (270.0, True)),
        ("22.5", (22.5, False)),
        ("360", (0.0, False)),
    ],
)
def test_rotations(rotation, expected):
    assert iiif.parse_rotation(rotation) == expected


@pytest.mark.parametrize("rotation", ["", "-90", "361", "!!0", "90!", "abc", "1e2"])
def test_bad_rotations(rotation):
    with pytest.raises(IiifError):
        iiif.parse_rotation(rotation)


@pytest.mark.parametrize(
    "qf, expected",
    [
        ("default.jpg", ("default", "jpg")),
        ("color.png", ("color", "png")),
        ("gray.webp", ("gray", "webp")),
        ("bitonal.jpg", ("bitonal", "jpg")),
    ],
)
def test_quality_format(qf, expected):
    assert iiif.parse_quality_format(qf) == expected


@pytest.mark.parametrize("qf", ["default", "native.jpg", "default.gif", "default.jpeg", ".jpg", "default.", "grey.jpg"])
def test_bad_quality_format(qf):
    with pytest.raises(IiifError):
        iiif.parse_quality_format(qf)


def test_full_request_and_canonical_form():
    req = parse("0,0,512,512", "256,", "!90", "gray.png")
    assert (req.x, req.y, req.w, req.h, req.out_w, req.out_h) == (0, 0, 512, 512, 256, 256)
    assert req.mirror and req.rotation == 90 and req.quality == "gray" and req.media_type == "image/png"
    assert req.canonical() == "0,0,512,512/256,256/!90/gray.png"
    # two spellings of the same image share the canonical form (and so the cache entry)
    assert parse("full", "max").canonical() == parse(f"0,0,{W},{H}", f"{W},").canonical()


def test_info_document():
    doc = iiif.info("http://x/iiif/3/abc", W, H, 512, **LIMITS)
    assert doc["@context"] == iiif.CONTEXT and doc["type"] == "ImageService3" and doc["profile"] == "level2"
    assert (doc["width"], doc["height"]) == (W, H)
    assert doc["tiles"] == [{"width": 512, "height": 512, "scaleFactors": [1, 2, 4, 8]}]
    assert doc["sizes"][0] == {"width": 278, "height": 371} and doc["sizes"][-1] == {"width": W, "height": H}
    assert "mirroring" in doc["extraFeatures"] and doc["extraFormats"] == ["webp"]


# -- info.json's media type (Image API 3.0 §5.1) -------------------------------------------------------
LD = 'application/ld+json;profile="http://iiif.io/api/image/3/context.json"'


@pytest.mark.parametrize(
    "accept, expected",
    [
        (None, LD),  # §5.1: "If the request does not include an Accept header ... application/ld+json"
        ("", LD),
        ("*/*", LD),  # what browsers' fetch and curl send: the server's choice
        ("application/*", LD),
        ("text/html,application/xhtml+xml,*/*;q=0.8", LD),
        ("application/ld+json", LD),
        ('application/ld+json;profile="http://iiif.io/api/image/3/context.json"', LD),
        ("application/json, application/ld+json", LD),
        ("application/json", "application/json"),  # asked for by name: kept
        ("Application/JSON; charset=utf-8", "application/json"),
        ("application/json, */*;q=0.1", "application/json"),
        ("application/json, application/ld+json;q=0", "application/json"),
        ("application/json;q=0, */*", LD),
    ],
)
def test_info_json_media_type_follows_accept(accept, expected):
    assert image_api.info_media_type(accept) == expected


@pytest.fixture(scope="module")
def client(tmp_path_factory, testdata):
    settings = Settings(data_dir=tmp_path_factory.mktemp("iiif"))
    slide = testdata("svs/cmu-1-small-region.svs")
    with TestClient(create_app(settings)) as client:
        with session_scope(settings) as session:
            session.add(Image(id="cmu", collection="c", filename=slide.name, path=str(slide), size=1, sha256="0" * 64))
        yield client


def test_info_json_without_accept_is_json_ld_with_vary_and_an_etag_per_representation(client):
    url = "/iiif/3/cmu/info.json"
    bare = client.build_request("GET", url)
    del bare.headers["accept"]  # httpx sends `Accept: */*` unless told not to
    ld = client.send(bare)
    plain = client.get(url, headers={"Accept": "application/json"})
    assert ld.status_code == 200 and ld.headers["content-type"] == LD
    assert plain.headers["content-type"] == "application/json" and plain.json() == ld.json()
    assert "Accept" in ld.headers["vary"] and ld.headers["vary"] == plain.headers["vary"]
    assert ld.headers["etag"] != plain.headers["etag"]
    assert client.get(url).headers["etag"] == ld.headers["etag"]  # `*/*`: the same representation
    assert "json-ld#context" not in ld.headers["link"] and "json-ld#context" in plain.headers["link"]
    again = client.get(url, headers={"If-None-Match": ld.headers["etag"]})
    assert again.status_code == 304 and again.headers["etag"] == ld.headers["etag"]
    other = client.get(url, headers={"Accept": "application/json", "If-None-Match": ld.headers["etag"]})
    assert other.status_code == 200 and other.headers["content-type"] == "application/json"
