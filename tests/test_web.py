"""The web page in a real browser: Debian's Chromium driven by Playwright against a real `tilewright serve`.

Upload a real slide through the page (with its progress bar), watch its job reach 100 % over
server-sent events, open it from the gallery in the OpenSeadragon viewer, check that tiles were
requested and that the viewer is not blank. Screenshots go to test-artifacts/ and docs/.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from services import REPO, clean_env, free_port, start_server

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
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


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (or `make test`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


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
