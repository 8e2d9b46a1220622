"""`POST /resize`, `POST /process` and uploads with a recipe, against the real app (TestClient, embedded
executor with a real process pool) and real image files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pyvips
from fastapi.testclient import TestClient

from conftest import TESTDATA
from services import assert_error, finished
from tilewright.config import Settings
from tilewright.server import create_app


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("process-api")


@pytest.fixture(scope="module")
def client(data):
    (data / "in").mkdir()
    settings = Settings(
        data_dir=data,
        input_roots=[str(TESTDATA), str(data / "in")],
        max_upload_bytes=3 * 2**20,
        max_image_pixels=50_000_000,
        concurrency=2,
        job_retry_backoff_seconds=0.1,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        c.settings = settings
        yield c


def decoded(content: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(content, "")


# -- /resize -----------------------------------------------------------------------------------------


def test_resize_fits_the_box_keeping_the_aspect(client, testdata):
    body = testdata("jpeg-png/2569067123_aca715a2ee_o.jpg").read_bytes()  # 2725 x 2225
    response = client.post("/resize?width=300&height=300", content=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    # the pixel sizes under their own names; X-Original-Size/X-Resized-Size are the byte counts (issue 14)
    assert response.headers["x-original-dimensions"] == "2725x2225"
    assert response.headers["x-resized-dimensions"] == "300x245"
    assert response.headers["x-original-size"] == str(len(body))
    assert response.headers["x-resized-size"] == str(len(response.content))
    assert response.headers["content-disposition"] == 'inline; filename="resized.jpg"'
    image = decoded(response.content)
    assert (image.width, image.height) == (300, 245)

    tall = client.post(
        "/resize?height=100&format=webp&quality=60", content=body, headers={"X-Filename": "my photo.jpg"}
    )
    assert tall.status_code == 200, tall.text
    assert tall.headers["content-type"] == "image/webp"
    assert tall.headers["x-resized-dimensions"] == "122x100"
    assert tall.headers["content-disposition"] == 'inline; filename="my_photo.webp"'
    assert (decoded(tall.content).width, decoded(tall.content).height) == (122, 100)


def test_resize_keeps_png_and_enlarges_to_the_width(client, testdata):
    response = client.post("/resize?width=600", content=testdata("jpeg-png/boxes.png").read_bytes())  # 300 x 250
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-resized-dimensions"] == "600x500"


@pytest.mark.parametrize(
    "query, text",
    [
        ("", "width and/or height"),
        ("?quality=50", "width and/or height"),
        ("?width=abc", "whole number"),
        ("?width=12.5", "whole number"),
        ("?height=0", "between 1 and 16384"),
        ("?width=16385", "between 1 and 16384"),
        ("?width=10&quality=0", "between 1 and 100"),
        ("?width=10&quality=101", "between 1 and 100"),
        ("?width=10&format=gif", "format must be"),
    ],
)
def test_resize_bad_parameters_are_400(client, testdata, query, text):
    assert_error(client.post(f"/resize{query}", content=testdata("jpeg-png/boxes.png").read_bytes()), 400, text)


def test_resize_bad_bodies(client, testdata):
    assert_error(client.post("/resize?width=10", content=b""), 400, "empty")
    assert_error(client.post("/resize?width=10", content=b"hello, this is not an image" * 10), 415)
    too_many_bytes = testdata("jpeg-png/PNG_2_RGB.png").read_bytes() + b"\0" * 2**20
    assert_error(client.post("/resize?width=10", content=too_many_bytes), 413, "limit")
    too_many_pixels = testdata("jpeg-png/giant-image.jpg").read_bytes()  # 20000 x 14000 > 50 M
    assert_error(client.post("/resize?width=10", content=too_many_pixels), 413)
    truncated = client.post("/resize?width=10", content=testdata("broken/truncated.jpg").read_bytes())
    assert truncated.status_code in (400, 415), truncated.text
    assert not list((client.settings.work_root() / "resize").iterdir())  # temp files removed


# -- /process ----------------------------------------------------------------------------------------


def test_process_inline_split_then_resize(client, testdata):
    source = str(testdata("jpeg-png/gradients-rgb8.png"))  # 1000 x 1000
    response = client.post(
        "/process",
        json={
            "images": [{"input": source, "output": "grid/quad.png"}],
            "operations": ["split", "resize=0.5", "blur=5", {"op": "resize", "scale": 0.5}],
        },
    )
    assert response.status_code == 200, response.text
    outputs = response.json()
    assert [o["path"] for o in outputs] == [f"processed/grid/quad_{i}.png" for i in range(4)]
    root = client.settings.resolved_output_root()
    for out in outputs:
        assert (out["width"], out["height"]) == (125, 125)
        written = pyvips.Image.new_from_file(str(root / out["path"]))
        assert (written.width, written.height) == (125, 125) and written.get("vips-loader") == "pngload"
        assert out["bytes"] == (root / out["path"]).stat().st_size
        assert client.get(out["url"]).status_code == 200


def test_process_an_uploaded_image_by_id_with_a_format(client, testdata):
    created = client.post(
        "/images?filename=boxes.png&collection=proc", content=testdata("jpeg-png/boxes.png").read_bytes()
    )
    assert created.status_code == 201, created.text
    image_id = created.json()["image"]["id"]
    response = client.post(
        "/process",
        json={"images": [{"input": image_id, "output": "boxes"}], "operations": ["resize=0.5"], "format": "webp"},
    )
    assert response.status_code == 200, response.text
    assert [(o["path"], o["width"], o["height"]) for o in response.json()] == [("processed/boxes.webp", 150, 125)]
    finished(client, created.json()["job"]["id"])


def test_process_resolves_ids_and_paths_of_one_request_in_one_session(client, testdata, monkeypatch):
    from tilewright.server import routes_process

    created = client.post(
        "/images?filename=boxes.png&collection=proc-mixed", content=testdata("jpeg-png/boxes.png").read_bytes()
    )
    assert created.status_code == 201, created.text
    sessions = []
    real = routes_process.session_scope

    def counted(settings):
        sessions.append(settings)
        return real(settings)

    monkeypatch.setattr(routes_process, "session_scope", counted)
    response = client.post(
        "/process",
        json={
            "images": [
                {"input": created.json()["image"]["id"], "output": "mixed/a.png"},
                {"input": str(testdata("jpeg-png/gradients-rgb8.png")), "output": "mixed/b.png"},
                {"input": created.json()["image"]["id"], "output": "mixed/c.png"},
            ],
            "operations": ["resize=0.1"],
        },
    )
    assert response.status_code == 200, response.text
    assert [(o["path"], o["width"], o["height"]) for o in response.json()] == [
        ("processed/mixed/a.png", 30, 25),
        ("processed/mixed/b.png", 100, 100),
        ("processed/mixed/c.png", 30, 25),
    ]
    assert len(sessions) == 1
    finished(client, created.json()["job"]["id"])


def test_process_invalid_operation_is_422_with_its_index(client, testdata):
    source = str(testdata("jpeg-png/boxes.png"))
    body = assert_error(
        client.post(
            "/process",
            json={"images": [{"input": source, "output": "x.png"}], "operations": ["split", "resize=0.5", "blur=-3"]},
        ),
        422,
    )
    assert (body["index"], body["op"]) == (2, "blur")
    body = assert_error(
        client.post(
            "/process",
            json={"images": [{"input": source, "output": "x.png"}], "operations": ["split", {"op": "explode"}]},
        ),
        422,
        "unknown",
    )
    assert body["index"] == 1


@pytest.mark.parametrize("output", ["/etc/passwd", "../escape.png", "a/../../escape.png", "", "..", "a/./../../b"])
def test_process_outputs_escaping_the_root_are_400(client, testdata, output):
    response = client.post(
        "/process",
        json={
            "images": [{"input": str(testdata("jpeg-png/boxes.png")), "output": output}],
            "operations": ["resize=0.5"],
        },
    )
    assert_error(response, 400)
    assert not (client.settings.resolved_output_root().parent / "escape.png").exists()


def test_process_inputs_outside_the_roots_are_403_and_bad_bodies_400(client, data):
    (data / "secret.png").write_bytes(b"x")
    # outside every root (a path trick included): forbidden, whatever the file is; an unknown id is no file
    for source, status in (
        ("/etc/passwd", 403),
        (str(data / "secret.png"), 403),
        (f"{TESTDATA}/../../../etc/passwd", 403),
        ("0" * 32, 403),
        (f"{TESTDATA}/no-such-file.png", 404),
    ):
        assert_error(
            client.post("/process", json={"images": [{"input": source, "output": "a.png"}], "operations": []}),
            status,
            "input",
        )
    assert_error(client.post("/process", content=b"{not json", headers={"content-type": "application/json"}), 400)
    assert_error(client.post("/process", json={"images": [], "operations": []}), 400)
    assert_error(client.post("/process", json={"images": [{"input": "x"}], "operations": []}), 400)
    assert_error(client.post("/process", json={"images": [{"input": "x", "output": "y"}], "operations": "blur"}), 400)


def test_a_large_process_request_becomes_a_job(client, testdata, monkeypatch):
    monkeypatch.setattr(client.settings, "process_inline_max_pixels", 10)
    response = client.post(
        "/process",
        json={
            "images": [
                {"input": str(testdata("jpeg-png/boxes.png")), "output": "job/boxes.jpg"},
                {"input": str(testdata("jpeg-png/gradients-rgb8.png")), "output": "job/grad.jpg"},
            ],
            "operations": [{"op": "resize", "width": 100}],
        },
    )
    assert response.status_code == 202, response.text
    # the answer shows paths relative to their root (an input root here), as every job answer does
    assert str(testdata("jpeg-png/boxes.png")) not in response.text
    assert response.json()["params"]["images"][0]["input"] == "jpeg-png/boxes.png"
    job = finished(client, response.json()["id"])
    assert job["state"] == "succeeded", job
    assert job["kind"] == "process"
    sizes = {o["path"]: (o["width"], o["height"]) for o in job["outputs"]["outputs"]}
    assert sizes == {"processed/job/boxes.jpg": (100, 83), "processed/job/grad.jpg": (100, 100)}
    assert (client.settings.resolved_output_root() / "processed/job/grad.jpg").is_file()


# -- uploads with a recipe ---------------------------------------------------------------------------


def test_upload_with_a_recipe_makes_thumbnails_and_metadata(client, testdata):
    body = testdata("jpeg-png/boxes.png").read_bytes()
    created = client.post("/images?filename=boxes.png&collection=recipes&recipe=default", content=body)
    assert created.status_code == 201, created.text
    image, job = created.json()["image"], created.json()["job"]
    assert job["kind"] == "recipe"
    assert finished(client, job["id"])["state"] == "succeeded"
    folder = client.settings.resolved_output_root() / "recipes" / image["id"]
    names = {p.name for p in folder.iterdir()}
    assert {
        "thumbnail_small.jpg",
        "thumbnail_medium.jpg",
        "thumbnail_large.jpg",
        "optimized.jpg",
        "watermarked.jpg",
        "metadata.json",
    } <= names
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["outputs"]
    record = client.get(f"/images/{image['id']}").json()
    assert f"/outputs/recipes/{image['id']}/metadata.json" in record["urls"]


def test_upload_of_a_slide_with_a_recipe_publishes_slide_dzi(client, testdata):
    source = testdata("svs/cmu-1-small-region.svs")
    with open(source, "rb") as handle:
        created = client.post(
            "/images?collection=rslides", files={"file": ("slide.svs", handle)}, data={"recipe": "default"}
        )
    assert created.status_code == 201, created.text
    image_id = created.json()["image"]["id"]
    assert finished(client, created.json()["job"]["id"], 120)["state"] == "succeeded"
    folder = client.settings.resolved_output_root() / "rslides" / image_id
    assert (folder / "slide.dzi").is_file() and (folder / "thumbnail_small.jpg").is_file()
    dzi = client.get(f"/images/{image_id}.dzi")
    assert dzi.status_code == 200 and b"<Image" in dzi.content


def test_upload_with_an_unknown_recipe_is_400(client, testdata):
    body = testdata("jpeg-png/boxes.png").read_bytes()
    assert_error(client.post("/images?filename=boxes.png&recipe=nope", content=body), 400, "unknown recipe")
    assert_error(client.post("/images?filename=boxes.png&recipe=../etc", content=body), 400, "recipe")
    assert_error(
        client.post("/images", files={"file": ("boxes.png", body)}, data={"recipe": "nope"}), 400, "unknown recipe"
    )
    assert not [p for p in client.settings.resolved_upload_dir().iterdir() if p.name.startswith(".incoming")]


def test_process_reads_json_whatever_the_content_type_and_checks_the_token_first(client, testdata, tmp_path):
    body = {"images": [{"input": str(testdata("jpeg-png/boxes.png")), "output": "ct/boxes.png"}], "operations": []}
    # `curl -d` sends form-encoded: the body is still the JSON it is, as it always was
    sent = client.post(
        "/process", content=json.dumps(body), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert sent.status_code == 200, sent.text
    assert client.post("/process", content=json.dumps(body), headers={"content-type": ""}).status_code == 200
    # with a token set, a request without it is a 401 whatever its body, malformed JSON included
    settings = Settings(data_dir=tmp_path, api_token="s3cret", input_roots=[str(TESTDATA)], concurrency=1)
    with TestClient(create_app(settings), raise_server_exceptions=False) as guarded:
        assert guarded.post("/process", content=b"{not json").status_code == 401
        assert guarded.post("/process", json=body).status_code == 401
