"""The slide viewer and the gallery in Chromium, at desktop (1280x800) and phone (390x844) sizes, against one
real `tilewright serve` (with a write token) and one uploaded slide, CMU-1-Small-Region.svs (0.499 µm/px,
20x, label, macro and thumbnail), run through the default recipe.

The slide's job is held behind a ping on the one worker, so that the first test opens the viewer on
dynamic tiles, sees the pyramid published, and compares the reopened viewer's canvas with a fresh load.
Screenshots go to test-artifacts/ (and docs/images/ with UPDATE_DOCS_SCREENSHOTS=1).
"""

from __future__ import annotations

import base64
import io
import os

import httpx
import numpy as np
import pytest
from PIL import Image as PILImage

from services import REPO, clean_env, free_port, start_server, wait_until

TOKEN = "viewer-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
NAME = "CMU 1 – small région (copy).svs"  # as uploaded: spaces, a dash, an accent, brackets
LONG_NAME = "holiday-photo_of-the-beach.at-sunset-from-the-pier.png"
ARTIFACTS = REPO / "test-artifacts"
LOADED = (
    "() => { const v = window.tilewright && window.tilewright.viewer;"
    " return v && v.world.getItemCount() === 1 && v.world.getItemAt(0).getFullyLoaded() && !v.world.needsDraw(); }"
)


SETTLED = (  # the zoom animation over, every tile drawn
    "() => { const v = window.tilewright.viewer.viewport;"
    f" return v.getZoom(true) === v.getZoom(false) && ({LOADED})(); }}"
)


def save(name: str, png: bytes, docs: bool = True) -> None:
    """A test artifact; for docs/images/ (UPDATE_DOCS_SCREENSHOTS=1) at most 900 px wide, in 128 colours:
    small files for the repository."""
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_bytes(png)
    if docs and os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        (REPO / "docs" / "images").mkdir(exist_ok=True)
        picture = PILImage.open(io.BytesIO(png)).convert("RGB")
        if picture.width > 900:
            picture = picture.resize((900, round(picture.height * 900 / picture.width)), PILImage.Resampling.LANCZOS)
        picture.quantize(128).save(REPO / "docs" / "images" / name, optimize=True)


class Site:
    """The server, its slide (held until `release`), and two photos for the gallery."""

    def __init__(self, url: str, testdata) -> None:
        self.url, self.testdata = url, testdata
        self.hold = self.post("/jobs", json={"kind": "ping", "params": {"seconds": 300, "nonce": "hold"}}).json()
        wait_until(lambda: self.job(self.hold["id"])["state"] == "running", 60, "the ping to hold the worker")
        with open(testdata("svs/cmu-1-small-region.svs"), "rb") as handle:
            answer = self.post("/images?collection=slides&recipe=default", files={"file": (NAME, handle)}).json()
        self.image, self.slide_job = answer["image"], answer["job"]

    def post(self, path: str, **kwargs) -> httpx.Response:
        response = httpx.post(self.url + path, headers=AUTH, timeout=60, **kwargs)
        assert response.status_code in (200, 201, 202), response.text
        return response

    def job(self, job_id: str) -> dict:
        return httpx.get(f"{self.url}/jobs/{job_id}").json()

    def release(self) -> None:
        """Let the slide's job run (the ping cancelled), and wait for it and the photos' jobs."""
        if self.job(self.hold["id"])["state"] == "running":
            self.post(f"/jobs/{self.hold['id']}/cancel")
        wait_until(lambda: self.job(self.slide_job["id"])["state"] == "succeeded", 120, "the slide's recipe")

    def photos(self) -> list[dict]:
        if not hasattr(self, "_photos"):
            body = self.testdata("jpeg-png/boxes.png").read_bytes()
            self._photos = [  # the same bytes: in two collections (one collection would answer the first again)
                self.post("/images", params={"filename": name, "collection": collection}, content=body).json()
                for name, collection in ((LONG_NAME, "photos"), ("sea.png", "sea"))
            ]
            for made in self._photos:
                wait_until(lambda made=made: self.job(made["job"]["id"])["state"] == "succeeded", 60, "a photo")
        return [made["image"] for made in self._photos]


@pytest.fixture(scope="module")
def site(tmp_path_factory, testdata):
    folder = tmp_path_factory.mktemp("viewer")
    port = free_port()
    env = clean_env(TILEWRIGHT_DATA_DIR=str(folder / "data"), TILEWRIGHT_CONCURRENCY="1", TILEWRIGHT_API_TOKEN=TOKEN)
    server = start_server(env, port, folder / "server.log")
    yield Site(f"http://127.0.0.1:{port}", testdata)
    server.stop()


@pytest.fixture(scope="module")
def published(site):
    site.release()
    return site


def open_page(browser, url: str, viewport: dict, token: str | None = None):
    context = browser.new_context(viewport=viewport)
    if token:
        context.add_init_script(f"localStorage.setItem('tilewright-token', {token!r})")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    return page, errors


def canvas(page) -> np.ndarray:
    """The viewer's rendered canvas, once every tile is drawn (two animation frames after)."""
    page.wait_for_function(LOADED, timeout=30_000)
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    page.wait_for_function(LOADED, timeout=30_000)
    url = page.evaluate("() => window.tilewright.viewer.drawer.canvas.toDataURL('image/png')")
    return np.asarray(PILImage.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))


def PILImage_png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def title(page) -> str:
    return page.inner_text("#viewer-title")


# -- 3. a viewer reopened after publication shows the pixels of a fresh load -------------------------------
VIEW = {"x": 0.43, "y": 0.61, "zoom": 3.5}  # viewport coordinates (image width = 1), ~ 1.9 slide px per screen px


def test_a_viewer_reopened_after_publication_shows_exactly_the_pixels_of_a_fresh_load(site, browser):
    image_id = site.image["id"]
    assert site.job(site.slide_job["id"])["state"] == "queued", "the slide's job must still wait (held by a ping)"
    page, errors = open_page(browser, f"{site.url}/#image={image_id}", DESKTOP)
    page.wait_for_function(LOADED, timeout=30_000)
    assert "dynamic tiles until its job has made the pyramid" in title(page)
    dynamic = httpx.get(f"{site.url}/images/{image_id}.dzi")
    assert dynamic.headers["cache-control"] == "no-cache" and 'TileSize="240"' in dynamic.text
    page.evaluate("(view) => window.tilewright.applyView(view)", VIEW)
    before = canvas(page)
    save("reopen-before.png", PILImage_png(before), docs=False)

    site.release()  # the page follows the job over SSE and reopens the viewer on the published pyramid
    page.wait_for_function(
        "() => document.querySelector('#viewer-title').textContent.includes('pre-built pyramid')"
        " && window.tilewright.opened === 2",
        timeout=60_000,
    )
    published = httpx.get(f"{site.url}/images/{image_id}.dzi").text
    assert 'TileSize="254"' in published and 'Overlap="1"' in published  # another grid at the same URLs
    page.evaluate("(view) => window.tilewright.applyView(view)", VIEW)
    reopened = canvas(page)

    fresh, fresh_errors = open_page(
        browser, f"{site.url}/#image={image_id}&x={VIEW['x']}&y={VIEW['y']}&zoom={VIEW['zoom']}", DESKTOP
    )
    loaded = canvas(fresh)
    assert fresh.evaluate("() => window.tilewright.currentView()") == {**VIEW, "rotation": 0, "flip": False}
    save("reopen-after.png", PILImage_png(reopened), docs=False)
    save("reopen-fresh.png", PILImage_png(loaded), docs=False)
    assert reopened.shape == loaded.shape == before.shape
    assert np.array_equal(reopened, loaded), "the reopened viewer differs from a fresh load"
    assert float(reopened[..., :3].std()) > 10  # not blank
    assert not errors and not fresh_errors, errors + fresh_errors
    page.context.close()
    fresh.context.close()


# -- 1. the viewer's tools ----------------------------------------------------------------------------
def test_scale_bar_magnification_cursor_rotate_flip_background_keys_share_and_associated(published, browser):
    image_id = published.image["id"]
    page, errors = open_page(browser, f"{published.url}/#image={image_id}", DESKTOP)
    page.wait_for_function(LOADED, timeout=30_000)
    assert NAME in title(page)
    # background: white for a brightfield slide, as chosen
    background = "getComputedStyle(document.querySelector('#viewer')).backgroundColor"
    assert page.evaluate(background) == "rgb(255, 255, 255)"
    page.select_option("#background", "black")
    assert page.evaluate(background) == "rgb(0, 0, 0)"
    page.select_option("#background", "white")

    # magnification presets 1x..40x from the objective (20x), the readout, and the scale bar at each
    presets = page.locator("#mag-presets button")
    assert presets.all_inner_texts() == ["1×", "2×", "5×", "10×", "20×", "40×"]
    for mag, readout in (("20", "20×"), ("5", "5.0×")):
        page.click(f'#mag-presets button[data-mag="{mag}"]')
        page.wait_for_function(f"() => document.querySelector('#mag-readout').textContent === '{readout}'")
        page.wait_for_function(SETTLED, timeout=30_000)
        zoom = float(page.get_attribute("#mag-readout", "data-zoom"))
        assert zoom == pytest.approx(int(mag) / 20, rel=1e-3)
        microns = float(page.get_attribute("#scalebar", "data-microns"))
        width = page.evaluate("() => document.querySelector('#scalebar .bar').getBoundingClientRect().width")
        assert width == pytest.approx(microns / (0.499 / zoom), rel=0.02)  # µm per screen px = mpp / zoom
        assert page.inner_text("#scalebar .label") in (f"{microns:g} µm", f"{microns / 1000:g} mm")
    save("viewer.png", page.screenshot())

    # the cursor in slide pixels and microns, under the pointer (the viewer's centre)
    box = page.locator("#viewer").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    x, y = (int(page.get_attribute("#cursor", name)) for name in ("data-x", "data-y"))
    cx, cy = page.evaluate(
        "() => { const v = window.tilewright.viewer.viewport;"
        " const p = v.viewportToImageCoordinates(v.getCenter(true)); return [p.x, p.y]; }"
    )
    assert abs(x - cx) <= 1 and abs(y - cy) <= 1
    assert f"{x * 0.499:.1f}, {y * 0.499:.1f} µm" in page.inner_text("#cursor")

    # rotate and flip with the buttons, then OpenSeadragon's keys on the focused canvas
    rotation = "() => window.tilewright.viewer.viewport.getRotation()"
    page.click("#rotate-right")
    page.click("#flip")
    assert page.evaluate(rotation) == 90 and page.evaluate("() => window.tilewright.viewer.viewport.getFlip()")
    page.click("#rotate-left")
    page.click("#flip")
    page.locator("#viewer .openseadragon-canvas").first.focus()
    zoom_before = page.evaluate("() => window.tilewright.viewer.viewport.getZoom()")
    page.keyboard.press("Equal")  # "+" without shift
    assert page.evaluate("() => window.tilewright.viewer.viewport.getZoom()") > zoom_before
    centre = page.evaluate("() => window.tilewright.viewer.viewport.getCenter().x")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => window.tilewright.viewer.viewport.getCenter().x") > centre
    page.keyboard.press("r")
    page.keyboard.press("f")
    assert page.evaluate(rotation) == 90 and page.evaluate("() => window.tilewright.viewer.viewport.getFlip()")

    # the shareable link: the address bar holds it; opened elsewhere, the same view exactly
    page.wait_for_function("() => location.hash.includes('rotation=90') && location.hash.includes('flip=1')")
    page.wait_for_function(LOADED, timeout=30_000)
    page.wait_for_function("() => document.querySelector('#share-url').value === location.href")
    view = page.evaluate("() => window.tilewright.currentView()")
    assert page.evaluate("() => window.tilewright.parseHash(location.hash).view") == view
    link = page.input_value("#share-url")
    assert link.startswith(f"{published.url}/#image={image_id}&")
    other, other_errors = open_page(browser, link, PHONE)
    other.wait_for_function(LOADED, timeout=30_000)
    assert other.evaluate("() => window.tilewright.currentView()") == view

    # the associated images and the recipe's outputs beside the viewer
    page.wait_for_function(
        "() => [...document.querySelectorAll('#meta .associated img')].every((i) => i.complete && i.naturalWidth)"
    )
    assert page.locator("#meta .associated figcaption").all_inner_texts() == ["label", "macro", "thumbnail"]
    outputs = page.locator("#meta .outputs a").all_inner_texts()
    for name in ("metadata.json", "thumbnail_small.jpg", "optimized.jpg", "watermarked.jpg", "slide.dzi"):
        assert name in outputs, outputs
    href = page.get_attribute("#meta .outputs a:has-text('metadata.json')", "href")
    assert httpx.get(f"{published.url}/{href}").json()["filename"]
    assert not errors and not other_errors, errors + other_errors
    page.context.close()
    other.context.close()


# -- 2. the gallery, on a desktop and on a phone ---------------------------------------------------------
NO_SIDEWAYS = "() => document.documentElement.scrollWidth <= window.innerWidth"


def test_gallery_names_search_pages_and_delete_with_the_token(published, browser):
    photos = published.photos()
    page, errors = open_page(browser, f"{published.url}/?per_page=2#gallery", DESKTOP)
    page.wait_for_selector(".thumb")
    assert page.inner_text("#page-info") == "1–2 of 3"
    page.click("#page-next")
    page.wait_for_function("() => document.querySelector('#page-info').textContent === '3–3 of 3'")
    # the slide, oldest, is last: its name as uploaded (stored on disk under a safe name)
    assert page.inner_text(".thumb .name") == NAME
    assert published.image["filename"] == "CMU_1_small_r_gion_copy_.svs"
    page.click("#page-prev")
    page.fill("#gallery-search", "BEACH")
    page.wait_for_function("() => document.querySelector('#page-info').textContent === '1–1 of 1'")
    assert page.inner_text(".thumb .name") == LONG_NAME
    save("gallery.png", page.locator("#gallery").screenshot())

    # delete: refused without the token (said in words), done with it
    target = photos[1]
    page.fill("#gallery-search", "sea")
    page.wait_for_selector(f'.thumb[data-image="{target["id"]}"]')
    page.on("dialog", lambda dialog: dialog.accept())
    page.click(f'.thumb[data-image="{target["id"]}"] .delete')
    page.wait_for_function("() => document.querySelector('#gallery-message').textContent.startsWith('Cannot delete')")
    assert "Authorization: Bearer" in page.inner_text("#gallery-message")
    page.fill("#token", TOKEN)
    page.click(f'.thumb[data-image="{target["id"]}"] .delete')
    page.wait_for_function("() => document.querySelector('#gallery-message').textContent === 'sea.png deleted.'")
    page.wait_for_selector(f'.thumb[data-image="{target["id"]}"]', state="detached")
    assert httpx.get(f"{published.url}/images/{target['id']}").status_code == 404
    assert not errors, errors
    page.context.close()


def test_a_phone_gets_every_part_without_sideways_scrolling_and_captions_break_between_words(published, browser):
    published.photos()
    image_id = published.image["id"]
    page, errors = open_page(browser, f"{published.url}/#image={image_id}", PHONE, token=TOKEN)
    page.wait_for_function(LOADED, timeout=30_000)
    page.wait_for_selector('#job-rows tr[data-state="succeeded"]')
    assert page.evaluate(NO_SIDEWAYS), page.evaluate("() => document.documentElement.scrollWidth")
    for part in ("#upload", "#jobs", "#gallery", "#viewer", "#meta", ".toolbar"):
        right = page.evaluate(f"() => document.querySelector('{part}').getBoundingClientRect().right")
        assert right <= PHONE["width"], (part, right)
    assert page.locator("#scalebar").is_visible() and page.locator("#mag-presets button").count() == 6
    save("phone.png", page.screenshot())
    # every line of a wrapped caption ends at a separator of the name, never inside a word
    caption = page.locator(".thumb .name", has_text="holiday")
    lines = caption.evaluate(
        """(box) => { const ends = []; let top = null, last = '';
        const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          for (let i = 0; i < node.length; i++) {
            const range = document.createRange(); range.setStart(node, i); range.setEnd(node, i + 1);
            const y = range.getClientRects()[0].top;
            if (top !== null && y > top + 2) ends.push(last);
            top = y; last = node.data[i];
          } }
        return ends; }"""
    )
    assert lines, "the caption did not wrap at this width"
    assert all(end in "_-. " for end in lines), lines
    assert not errors, errors
    page.context.close()
