"""The web page in a real browser: Debian's Chromium driven by Playwright against a real `tilewright serve`.

Upload a real slide through the page (with its progress bar), watch its job reach 100 % over
server-sent events, open it from the gallery in the OpenSeadragon viewer, check that tiles were
requested and that the viewer is not blank. Screenshots go to test-artifacts/ and docs/.
The same page also works under a path prefix, behind a real reverse proxy (`ReverseProxy`).
"""

from __future__ import annotations

import io
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image as PILImage
from starlette.types import Receive, Scope, Send

from services import REPO, clean_env, free_port, start_server, wait_until

ARTIFACTS = REPO / "test-artifacts"
OSD = REPO / "build" / "openseadragon" / "openseadragon.min.js"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not OSD.is_file():
        pytest.fail(f"{OSD} is missing: run `make web-assets` (npm installs OpenSeadragon)")
    folder = tmp_path_factory.mktemp("web")
    port = free_port()
    proc = start_server(
        clean_env(TILEWRIGHT_DATA_DIR=str(folder / "data"), TILEWRIGHT_CONCURRENCY="1"), port, folder / "server.log"
    )
    yield f"http://127.0.0.1:{port}"
    proc.stop()


def not_blank(png: bytes) -> float:
    pixels = np.asarray(PILImage.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    return float(pixels.std())


def save(name: str, png: bytes) -> None:
    """Always a test artifact; the README's pictures in docs/ only when asked (UPDATE_DOCS_SCREENSHOTS=1)."""
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_bytes(png)
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(ARTIFACTS / name, REPO / "docs" / name)


def test_upload_watch_and_view(server, browser, testdata):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    tile_requests: list[str] = []
    page.on("requestfinished", lambda request: tile_requests.append(request.url) if "_files/" in request.url else None)

    page.goto(server + "/")
    assert page.title() == "tilewright"
    # a favicon of its own, drawn by the browser from the page (no request leaves the app's prefix)
    icon = page.locator('link[rel="icon"]').get_attribute("href") or ""
    assert (
        icon.startswith("data:image/svg+xml,")
        and page.evaluate(
            """async (href) => { const img = new Image(); img.src = href; await img.decode(); return img.width; }""",
            icon,
        )
        > 0
    )
    page.fill("#collection", "webtest")
    page.set_input_files("#file", str(testdata("svs/cmu-1-small-region.svs")))
    page.click("#upload-button")
    page.wait_for_selector("#upload-progress.done", timeout=30_000)
    assert "uploaded" in page.inner_text("#upload-progress")

    # the job appears and is followed live until it finishes: state, stage, progress bar at 100 %
    row = page.locator("#job-rows tr[data-job]").first
    row.wait_for(timeout=10_000)
    page.wait_for_selector('#job-rows tr[data-state="succeeded"]', timeout=120_000)
    done = page.locator('#job-rows tr[data-state="succeeded"]').first
    assert done.locator('[role="progressbar"]').get_attribute("aria-valuenow") == "100"
    assert "100 %" in done.inner_text()
    save("jobs.png", page.screenshot(clip={"x": 0, "y": 0, "width": 1400, "height": 560}))

    # the gallery shows it; a click opens the viewer on its tiles, with the metadata beside it
    page.wait_for_selector(".thumb img", timeout=10_000)
    page.wait_for_function("document.querySelector('.thumb img').naturalWidth > 0", timeout=10_000)
    page.click(".thumb")
    page.wait_for_selector("#viewer .openseadragon-canvas", timeout=15_000)
    page.wait_for_function(
        "window.tilewrightViewer && window.tilewrightViewer.world.getItemCount() > 0 && "
        "window.tilewrightViewer.world.getItemAt(0).getFullyLoaded()",
        timeout=30_000,
    )
    meta = page.inner_text("#meta")
    assert "2220 × 2967 px" in meta and "aperio" in meta
    assert tile_requests, "the viewer requested no tiles"
    assert all("/images/" in url for url in tile_requests)
    page.wait_for_timeout(500)  # let the last tiles blend in
    shot = page.locator("#viewer").screenshot()
    assert not_blank(shot) > 10, "the viewer screenshot is blank"
    save("viewer.png", page.screenshot(full_page=False))
    assert not errors, errors
    page.close()


def test_page_shows_a_refused_upload_in_words(server, browser, testdata):
    page = browser.new_page()
    page.goto(server + "/")
    page.set_input_files("#file", str(testdata("broken/broken.svs")))
    page.click("#upload-button")
    page.wait_for_selector("#upload-progress.failed", timeout=30_000)
    message = page.inner_text("#upload-message")
    assert message.startswith("Upload refused:") and "broken.svs" in message
    page.close()


def upload_through_page(page, path: Path, collection: str, kind: str | None = None, recipe: str | None = None) -> tuple:
    """Fill the upload form and send it; -> (the query the page sent, the server's answer)."""
    page.fill("#collection", collection)
    if recipe is not None:
        page.wait_for_selector(f'#recipe option[value="{recipe}"]', state="attached", timeout=10_000)
        page.select_option("#recipe", recipe)
    if kind is not None:
        page.select_option("#kind", kind)
    page.set_input_files("#file", str(path))
    with page.expect_response(lambda r: "/images?" in r.url and r.request.method == "POST") as answer:
        page.click("#upload-button")
    response = answer.value
    return parse_qs(urlsplit(response.url).query, keep_blank_values=True), response.json()


def finished_row(page, job_id: str, state: str):
    page.wait_for_selector(f'#job-rows tr[data-job="{job_id}"][data-state="{state}"]', timeout=120_000)
    return page.locator(f'#job-rows tr[data-job="{job_id}"]')


def test_the_page_makes_the_output_chosen_and_shows_what_was_made(server, browser, testdata):
    """Issue 11: the page sent `recipe=default` whatever "Output" said, so an upload for IIIF got a DZI."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server + "/")
    sent, answer = upload_through_page(page, testdata("jpeg-png/boxes.png"), "iiif-page", kind="iiif")
    assert sent["kind"] == ["iiif"] and sent["recipe"] == [""], sent
    job = answer["job"]
    assert (job["kind"], job["params"]["kind"]) == ("convert", "iiif")
    assert "converts it to IIIF tiles" in page.inner_text("#upload-message")
    row = finished_row(page, job["id"], "succeeded")
    assert "convert → iiif" in row.inner_text()
    made = row.locator(".made a")
    assert made.count() == 1 and made.first.inner_text() == "info.json"
    info = httpx.get(f"{server}/{made.first.get_attribute('href')}")
    assert info.status_code == 200 and info.json()["width"] == answer["image"]["width"]
    # a recipe decides its own outputs: the Output choice is then visibly not used, and the recipe is sent
    page.select_option("#recipe", "default")
    assert page.is_disabled("#kind") and page.is_visible("#recipe-note")
    page.close()


def test_a_bad_input_fails_in_words_without_retry(server, browser, testdata):
    """A truncated JPEG run through the default recipe: the reason `tilewright convert` gives, no server path,
    and no Retry (retrying cannot help); a cancelled job still offers Retry."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server + "/")
    _, answer = upload_through_page(page, testdata("broken/truncated.jpg"), "broken-page", recipe="default")
    assert answer["job"]["kind"] == "recipe"
    row = finished_row(page, answer["job"]["id"], "failed")
    error = row.locator(".error").inner_text()
    image_id = answer["image"]["id"]
    assert (
        error == f"{image_id}/truncated.jpg: image data is corrupt or truncated: VipsJpeg: premature end of JPEG image"
    )
    assert row.locator('[data-action="retry"]').count() == 0

    slow = httpx.post(f"{server}/jobs", json={"kind": "ping", "params": {"seconds": 60, "nonce": "web-cancel"}}).json()
    wait_until(lambda: httpx.get(f"{server}/jobs/{slow['id']}").json()["state"] == "running", 60, "the ping to run")
    httpx.post(f"{server}/jobs/{slow['id']}/cancel")
    wait_until(lambda: httpx.get(f"{server}/jobs/{slow['id']}").json()["state"] == "cancelled", 60, "the cancel")
    page.reload()
    cancelled = finished_row(page, slow["id"], "cancelled")
    assert cancelled.locator('[data-action="retry"]').count() == 1
    page.close()


def test_a_photo_gets_a_pyramid_or_the_page_says_it_is_served_dynamically(server, browser, testdata):
    """A flat PNG converted to Deep Zoom (the page's default) is viewed on its pyramid; through the default
    recipe (a pyramid for slides only) the viewer says plainly that it is served dynamically."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server + "/")
    for collection, recipe, note in (
        ("photo-dzi", None, "pre-built pyramid"),
        ("photo-recipe", "default", "served dynamically"),
    ):
        _, answer = upload_through_page(page, testdata("jpeg-png/boxes.png"), collection, recipe=recipe)
        finished_row(page, answer["job"]["id"], "succeeded")
        image_id = answer["image"]["id"]
        page.wait_for_selector(f'.thumb[data-image="{image_id}"]', timeout=30_000)
        page.click(f'.thumb[data-image="{image_id}"]')
        page.wait_for_function(
            "([id, note]) => document.querySelector('#meta dd')?.textContent === id"
            " && document.querySelector('#viewer-title').textContent.includes(note)",
            arg=[image_id, note],
            timeout=30_000,
        )
        page.goto(server + "/")
    page.close()


# -- under a path prefix, behind a reverse proxy --------------------------------------------------------
HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te", b"trailer", b"host"}


class ReverseProxy:
    """A reverse proxy as nginx's `location /tiles/ { proxy_pass http://backend/; }`: it serves the backend
    under `prefix`, strips it, streams the answers (server-sent events too), 404s anything else; and
    remembers every path it was asked for."""

    def __init__(self, backend: str, prefix: str) -> None:
        self.backend, self.prefix = backend, prefix
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        path = scope["raw_path"].decode()
        self.paths.append(path)
        if not path.startswith(self.prefix + "/"):
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"not under the prefix"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope["query_string"].decode()
        url = self.backend + path[len(self.prefix) :] + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in scope["headers"] if k not in HOP_BY_HOP and k != b"content-length"]
        async with httpx.AsyncClient(timeout=None) as client:
            request = client.build_request(scope["method"], url, headers=headers, content=body)
            response = await client.send(request, stream=True)
            kept = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code, "headers": kept})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            await response.aclose()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """`tilewright serve` with TILEWRIGHT_PUBLIC_URL under /tiles (its root path), behind `ReverseProxy`."""
    folder = tmp_path_factory.mktemp("proxied")
    port, proxy_port = free_port(), free_port()
    env = clean_env(
        TILEWRIGHT_DATA_DIR=str(folder / "data"),
        TILEWRIGHT_CONCURRENCY="1",
        TILEWRIGHT_PUBLIC_URL=f"http://127.0.0.1:{proxy_port}/tiles",
    )
    backend = start_server(env, port, folder / "server.log")
    proxy = ReverseProxy(f"http://127.0.0.1:{port}", "/tiles")
    server = uvicorn.Server(
        uvicorn.Config(proxy, host="127.0.0.1", port=proxy_port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "the reverse proxy to listen")
    yield f"http://127.0.0.1:{proxy_port}", proxy
    server.should_exit = True
    thread.join(timeout=10)
    backend.stop()


def test_the_page_works_under_a_path_prefix_behind_a_proxy(proxied, browser, testdata):
    public, proxy = proxied
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    requested: list[str] = []
    failed: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)

    page.goto(public + "/tiles/")
    assert page.title() == "tilewright"
    page.set_input_files("#file", str(testdata("svs/cmu-1-small-region.svs")))
    page.click("#upload-button")
    page.wait_for_selector("#upload-progress.done", timeout=30_000)
    page.wait_for_selector('#job-rows tr[data-state="succeeded"]', timeout=120_000)  # followed over SSE
    page.wait_for_function(
        "document.querySelector('.thumb img') && document.querySelector('.thumb img').naturalWidth > 0", timeout=10_000
    )
    page.click(".thumb")
    page.wait_for_function(
        "window.tilewrightViewer && window.tilewrightViewer.world.getItemCount() > 0 && "
        "window.tilewrightViewer.world.getItemAt(0).getFullyLoaded()",
        timeout=30_000,
    )
    page.wait_for_selector("#meta figure img", timeout=10_000)  # the associated images, by their relative URLs
    page.wait_for_function("[...document.querySelectorAll('#meta figure img')].every((i) => i.complete)")
    assert any("_files/" in url for url in requested), "the viewer requested no tiles"
    assert any("/vendor/openseadragon/images/" in url for url in requested), "no OpenSeadragon button images"
    assert any("/events" in url for url in requested) and any("/static/app.js" in url for url in requested)
    outside = [url for url in requested if not url.startswith(public + "/tiles/")]
    assert not outside, outside
    assert not failed, failed
    assert all(path.startswith("/tiles/") for path in proxy.paths), [
        p for p in proxy.paths if not p.startswith("/tiles/")
    ]
    # the absolute URLs the server writes are the public ones
    record = httpx.get(public + "/tiles/images?limit=1").json()[0]
    info = httpx.get(f"{public}/tiles/iiif/3/{record['id']}/info.json").json()
    assert info["id"] == f"{public}/tiles/iiif/3/{record['id']}"
    assert not errors, errors
    page.close()
