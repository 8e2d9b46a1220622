"""The Azure Functions upload pipeline's HTTP resize on `POST /api/resize` (issue 14): its clients' requests
sent as they send them (curl against `tilewright serve`, then the app), answered as that function answered:
status codes, the byte-count headers, always JPEG, its Content-Disposition and its 400 texts. The expected
sizes are those of Pillow's `thumbnail`, which the function called."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import pyvips
from fastapi.testclient import TestClient
from PIL import Image

from services import assert_error, clean_env, free_port, start_server
from tilewright.config import Settings
from tilewright.server import create_app

PHOTO = "jpeg-png/2569067123_aca715a2ee_o.jpg"  # 2725 x 2225
BOXES = "jpeg-png/boxes.png"  # 300 x 250, palette
BAD_PARAMETERS = "Invalid width, height, or quality parameter"
NO_BODY = "No image data in request body"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("azure-resize"), azure_resize_max_bytes=2 * 2**20)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        c.settings = settings
        yield c


def pillow_size(path: Path, width: int, height: int) -> tuple[int, int]:
    """The size the function answered: Pillow's `thumbnail((width, height))` of the image."""
    with Image.open(path) as image:
        image.thumbnail((width, height))
        return image.size


def decoded(content: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(content, "")


def test_the_clients_curl_against_serve(tmp_path, testdata):
    """`curl -X POST "http://HOST/api/resize?width=200&height=200&quality=85" --data-binary @img`, as written."""
    port = free_port()
    server = start_server(clean_env(TILEWRIGHT_DATA_DIR=str(tmp_path / "data")), port, tmp_path / "server.log")
    try:
        image, headers, out = testdata(PHOTO), tmp_path / "headers.txt", tmp_path / "resized.jpg"
        url = f"http://127.0.0.1:{port}/api/resize?width=200&height=200&quality=85"
        command = ["curl", "-sS", "-X", "POST", url, "--data-binary", f"@{image}", "-D", str(headers), "-o", str(out)]
        subprocess.run(command, check=True, timeout=60)
    finally:
        server.stop()
    status, *lines = headers.read_text().strip().splitlines()
    assert status.split()[1] == "200", headers.read_text()
    got = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    assert got["content-type"] == "image/jpeg"
    assert got["content-disposition"] == "inline; filename=resized_200x200.jpg"
    assert got["x-original-size"] == str(image.stat().st_size)  # len(image_data)
    assert got["x-resized-size"] == str(out.stat().st_size)  # len(result)
    assert got["x-original-dimensions"] == "2725x2225"
    result = pyvips.Image.new_from_file(str(out))
    assert result.get("vips-loader") == "jpegload"
    assert (result.width, result.height) == pillow_size(image, 200, 200) == (200, 163)
    assert got["x-resized-dimensions"] == "200x163"
    # written as Pillow writes it: 4:2:0 chroma, none of the photo's metadata
    assert result.get("jpeg-chroma-subsample") == "4:2:0" and "exif-data" not in result.get_fields()


@pytest.mark.parametrize("box", [(200, 200), (150, 1000), (1000, 90), (2725, 2225), (5000, 5000)])
def test_sizes_are_pillows_thumbnail(client, testdata, box):
    """Fitted inside the box, aspect kept, never enlarged: the size Pillow's thumbnail made."""
    body = testdata(PHOTO).read_bytes()
    response = client.post(f"/api/resize?width={box[0]}&height={box[1]}", content=body)
    assert response.status_code == 200, response.text
    image = decoded(response.content)
    assert (image.width, image.height) == pillow_size(testdata(PHOTO), *box)
    assert response.headers["content-disposition"] == f"inline; filename=resized_{box[0]}x{box[1]}.jpg"


def test_the_defaults_and_always_jpeg(client, testdata, tmp_path):
    """No query: 300 x 300 at quality 85; a PNG (palette or with alpha) comes back as JPEG, alpha on white."""
    response = client.post("/api/resize", content=testdata(BOXES).read_bytes())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-disposition"] == "inline; filename=resized_300x300.jpg"
    assert (decoded(response.content).width, decoded(response.content).height) == (300, 250)
    assert response.content == client.post("/api/resize?quality=85", content=testdata(BOXES).read_bytes()).content

    transparent = tmp_path / "alpha.png"
    pyvips.Image.black(64, 64, bands=4).copy(interpretation="srgb").pngsave(str(transparent))
    flattened = client.post("/api/resize?width=32&height=32", content=transparent.read_bytes())
    assert flattened.status_code == 200 and flattened.headers["content-type"] == "image/jpeg"
    pixel = decoded(flattened.content)(16, 16)
    assert decoded(flattened.content).bands == 3 and min(pixel) > 250  # white, as the function pasted it


def test_quality_is_read_as_pillow_read_it(client, testdata):
    """1..100; Pillow clamped other values into that range (and took -1 as its default, 75)."""
    body = testdata(PHOTO).read_bytes()

    def size(quality: str) -> int:
        response = client.post(f"/api/resize?width=400&height=400&quality={quality}", content=body)
        assert response.status_code == 200, response.text
        assert int(response.headers["x-resized-size"]) == len(response.content)
        return len(response.content)

    assert size("30") < size("85") < size("100")
    assert size("150") == size("100") and size("0") == size("1") == size("-7")
    assert size("-1") == size("75")
    assert size(" 85 ") == size("85")  # int() takes the spaces around a number


@pytest.mark.parametrize(
    "query", ["width=abc", "height=", "quality=high", "width=12.5", "width=200&height=1e3", "width=0", "height=-5"]
)
def test_bad_parameters_are_the_functions_400(client, testdata, query):
    response = client.post(f"/api/resize?{query}", content=testdata(BOXES).read_bytes())
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == BAD_PARAMETERS


def test_empty_body_is_the_functions_400(client):
    response = client.post("/api/resize?width=200&height=200", content=b"")
    assert (response.status_code, response.text) == (400, NO_BODY)
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert client.post("/api/resize?width=x", content=b"").text == BAD_PARAMETERS  # the parameters first


def test_limits_and_what_is_not_an_image(client, testdata):
    """Not what the function said (it answered 500 or ran out of memory): tilewright's JSON errors."""
    too_large = testdata("jpeg-png/PNG_2_RGB.png").read_bytes() + b"\0" * 2 * 2**20
    assert_error(client.post("/api/resize", content=too_large), 413, "TILEWRIGHT_AZURE_RESIZE_MAX_BYTES")
    assert_error(client.post("/api/resize", content=b"this is not an image" * 10), 415)
    assert client.get("/api/resize").status_code == 405
    assert not list((client.settings.work_root() / "resize").iterdir())  # temp files removed


def test_over_the_pixel_limit_and_greyscale(tmp_path, testdata):
    settings = Settings(data_dir=tmp_path, max_image_pixels=1_000_000)
    grey = tmp_path / "grey.png"
    pyvips.Image.new_from_file(str(testdata(BOXES))).colourspace("b-w").pngsave(str(grey))
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert_error(c.post("/api/resize", content=testdata(PHOTO).read_bytes()), 413, "TILEWRIGHT_MAX_IMAGE_PIXELS")
        response = c.post("/api/resize?width=100&height=100", content=grey.read_bytes())
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert decoded(response.content).bands == 1  # Pillow made it RGB; the same pixels in one channel here


def test_the_write_token_also_as_a_function_key(tmp_path, testdata):
    settings = Settings(data_dir=tmp_path, api_token="s3cret")
    body = testdata(BOXES).read_bytes()
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert_error(c.post("/api/resize", content=body), 401, "Bearer")
        assert_error(c.post("/api/resize?code=wrong", content=body), 401)
        assert c.post("/api/resize", content=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/api/resize", content=body, headers={"x-functions-key": "s3cret"}).status_code == 200
        assert c.post("/api/resize?width=50&code=s3cret", content=body).status_code == 200
