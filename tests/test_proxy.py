"""Behind a reverse proxy: `public_url`, `root_path` and `forwarded_allow_ips` (server/proxy.py).

The absolute URLs the server writes (IIIF `info.json` `id`) come from `public_url` when it is set, whatever
the `Host` header says; without it from the request, where forwarded headers count only from a trusted
peer. Against the real app (TestClient, whose peer address each test chooses) and a real
`tilewright serve` (uvicorn with the settings `serve` passes it). The web page under a prefix behind a
real reverse proxy is tests/test_web.py's.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from services import clean_env, free_port, start_server
from test_tiles import add_image
from tilewright.config import Settings
from tilewright.server import create_app
from tilewright.server.proxy import forwarded_element

SLIDE = "svs/cmu-1-small-region.svs"
TRUSTED, STRANGER = ("10.1.2.3", 40000), ("192.0.2.7", 40000)
FORGED = {
    "Host": "evil.example",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Prefix": "/evil",
    "Forwarded": 'for=192.0.2.9;proto=https;host="evil.example"',
}


def serving(tmp_path, testdata, **values):
    settings = Settings(data_dir=tmp_path, **values)
    app = create_app(settings)
    add_after_start = (settings, "cmu", testdata(SLIDE))
    return app, add_after_start


def info_id(client: TestClient, headers: dict[str, str] | None = None) -> str:
    r = client.get("/iiif/3/cmu/info.json", headers=headers or {})
    assert r.status_code == 200, r.text
    return r.json()["id"]


# -- the settings ---------------------------------------------------------------------------------------
def test_settings_are_checked_where_declared():
    settings = Settings(public_url="https://example.org/tiles/")
    assert settings.public_url == "https://example.org/tiles" and settings.resolved_root_path() == "/tiles"
    assert Settings(public_url="https://example.org/tiles", root_path="").resolved_root_path() == ""
    assert Settings(root_path="/a/b/").resolved_root_path() == "/a/b"
    assert Settings().resolved_root_path() == "" and Settings().forwarded_allow_ips == []
    assert Settings(forwarded_allow_ips=["10.0.0.1", "10.0.0.0/8", "::1", "*"]).forwarded_allow_ips[1] == "10.0.0.0/8"
    for bad in (
        {"public_url": "example.org/tiles"},
        {"public_url": "ftp://example.org"},
        {"public_url": "https://example.org/tiles?x=1"},
        {"public_url": "https:///tiles"},
        {"root_path": "tiles"},
        {"root_path": "/a b"},
        {"forwarded_allow_ips": ["10.0.0.300"]},
        {"forwarded_allow_ips": ["proxy.example"]},
    ):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            Settings(**bad)


def test_forwarded_header_parsing():
    assert forwarded_element("for=192.0.2.60;proto=https;by=203.0.113.43") == {
        "for": "192.0.2.60",
        "proto": "https",
        "by": "203.0.113.43",
    }
    # a chain: the last element is the one the proxy next to us wrote
    assert forwarded_element('for=1.1.1.1;host=a.example, for="[2001:db8::1]:4711";host="b.example:8443"') == {
        "for": "[2001:db8::1]:4711",
        "host": "b.example:8443",
    }
    assert forwarded_element("for=1.1.1.1;junk") == {}


# -- absolute URLs ----------------------------------------------------------------------------------------
def test_public_url_is_every_absolute_url_whatever_the_host_header(tmp_path, testdata):
    app, record = serving(tmp_path, testdata, public_url="https://example.org/tiles")
    with TestClient(app, client=STRANGER) as client:
        add_image(*record)
        assert info_id(client, {"Host": "evil.example"}) == "https://example.org/tiles/iiif/3/cmu"
        assert info_id(client, FORGED) == "https://example.org/tiles/iiif/3/cmu"
        # links and redirects are under the root path derived from public_url
        redirect = client.get("/iiif/3/cmu", follow_redirects=False)
        assert redirect.headers["location"] == "/tiles/iiif/3/cmu/info.json"
        info = client.get("/images/cmu/info").json()
        assert info["dzi"] == "/tiles/images/cmu.dzi" and info["iiif"] == "/tiles/iiif/3/cmu/info.json"
        assert all(url.startswith("/tiles/images/cmu/associated/") for url in info["associated"])


def test_forwarded_headers_count_only_from_a_trusted_proxy(tmp_path, testdata):
    app, record = serving(tmp_path, testdata, forwarded_allow_ips=["10.0.0.0/8"])
    with TestClient(app, client=STRANGER) as stranger:
        proxy = TestClient(app, client=TRUSTED)  # the same running app (one lifespan), another peer
        add_image(*record)
        assert info_id(stranger) == "http://testserver/iiif/3/cmu"
        assert (
            info_id(stranger, {"Host": "evil.example"}) == "http://evil.example/iiif/3/cmu"
        )  # as before: no public_url
        assert info_id(stranger, FORGED) == "http://evil.example/iiif/3/cmu"  # only Host, never the forwarded ones
        assert stranger.get("/evil/images/cmu.dzi", headers=FORGED).status_code == 404

        xf = {"X-Forwarded-Host": "public.example", "X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/tiles/"}
        assert info_id(proxy, xf) == "https://public.example/tiles/iiif/3/cmu"
        assert proxy.get("/images/cmu/info", headers=xf).json()["dzi"] == "/tiles/images/cmu.dzi"
        forwarded = {"Forwarded": 'for=198.51.100.1, for=192.0.2.60;proto=https;host="pub.example:8443"'}
        assert info_id(proxy, forwarded) == "https://pub.example:8443/iiif/3/cmu"
        assert info_id(proxy, {"X-Forwarded-Host": "bad host/x"}) == "http://testserver/iiif/3/cmu"  # not a host
    app, record = serving(tmp_path / "default", testdata)  # the default: no proxy is trusted, not even loopback
    with TestClient(app, client=("127.0.0.1", 40000)) as local:
        add_image(*record)
        assert info_id(local, FORGED) == "http://evil.example/iiif/3/cmu"


def test_serve_passes_the_settings_to_uvicorn(tmp_path, testdata):
    """A real `tilewright serve`: root path and trusted proxies reach uvicorn and the app; uvicorn's own
    default (trust X-Forwarded-* from 127.0.0.1) is off."""
    port = free_port()
    env = clean_env(
        TILEWRIGHT_DATA_DIR=str(tmp_path / "data"),
        TILEWRIGHT_ROOT_PATH="/tiles",
        TILEWRIGHT_FORWARDED_ALLOW_IPS='["10.0.0.0/8"]',
    )
    server = start_server(env, port, tmp_path / "server.log")
    try:
        base = f"http://127.0.0.1:{port}"
        docs = httpx.get(f"{base}/docs")
        assert docs.status_code == 200 and "/tiles/openapi.json" in docs.text  # FastAPI's docs under the root path
        page = httpx.get(f"{base}/")
        assert page.status_code == 200 and 'src="static/app.js"' in page.text
        assert httpx.get(f"{base}/static/app.js").status_code == 200
        # from 127.0.0.1, not a trusted proxy here: forwarded headers change nothing
        redirect = httpx.get(f"{base}/iiif/3/nosuch", headers=FORGED, follow_redirects=False)
        assert redirect.headers["location"] == "/tiles/iiif/3/nosuch/info.json"
    finally:
        server.stop()
