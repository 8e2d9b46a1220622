"""py-image-server's `POST /items/` (issue 14): the request shapes of its test suite (`test_main.py`: four
images, outputs `.jpg` and `.PNG`, its eight operation lists) and its README's chained example, sent as
written, answered as it answered: 200 with the request echoed, the files at the given paths under its
names (`NAME_1.EXT`...), of the sizes its arithmetic made; plus what tilewright refuses (paths outside the
roots) and adds (`results`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
import pyvips
from fastapi.testclient import TestClient

from conftest import TESTDATA
from services import assert_error, clean_env, free_port, start_server
from tilewright.config import Settings
from tilewright.server import create_app

PHOTO = TESTDATA / "jpeg-png/2569067123_aca715a2ee_o.jpg"
CHAINED = ["splitQuadrants=True", "resize=2", "splitQuadrants=True", "resize=2"]


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> tuple[Path, Path]:
    """(input folder with cyclo1..4.jpg made from real photos, odd sizes included; the items output root)."""
    base = tmp_path_factory.mktemp("py-image-server")
    inputs, outputs = base / "testimages", base / "testoutput"
    inputs.mkdir()
    for name, source, width in [
        ("cyclo1.jpg", PHOTO, 401),
        ("cyclo2.jpg", TESTDATA / "jpeg-png/gradients-rgb8.png", 300),
        ("cyclo3.jpg", TESTDATA / "jpeg-png/boxes.png", 255),
        ("cyclo4.jpg", PHOTO, 400),  # 400 x 327
    ]:
        pyvips.Image.thumbnail(str(source), width).jpegsave(str(inputs / name), Q=90)
    return inputs, outputs


@pytest.fixture(scope="module")
def client(roots, tmp_path_factory):
    inputs, outputs = roots
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("items-data"), input_roots=[str(inputs)], items_output_root=outputs
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def request_json(roots: tuple[Path, Path], test: str, operations: list[str], inputs: list[str] | None = None) -> dict:
    """The request of test_main.py: cyclo1..4, outputs alternately .jpg and .PNG, in testoutput/TEST/."""
    folder, out = roots[0], roots[1] / test
    names = inputs or [f"cyclo{n}.jpg" for n in range(1, 5)]
    return {
        "images": [
            {"input": str(folder / name), "output": str(out / f"cyclo{n}_processed.{'jpg' if n % 2 else 'PNG'}")}
            for n, name in enumerate(names, start=1)
        ],
        "operations": operations,
    }


def old_sizes(width: int, height: int, operations: list[str]) -> list[tuple[int, int]]:
    """The sizes py-image-server's arithmetic made: halves of int(side / 2) (the rest to the right and the
    bottom), int(side * factor), out-of-range steps skipped, blur keeping the size."""
    sizes = [(width, height)]
    for text in operations:
        method, argument = text.split("=")[:2]
        if method == "splitQuadrants" and argument != "None" and argument.lower() != "false":
            sizes = [
                quad
                for w, h in sizes
                for quad in ((w // 2, h // 2), (w - w // 2, h // 2), (w // 2, h - h // 2), (w - w // 2, h - h // 2))
            ]
        elif method == "resize" and 0.05 <= float(argument) < 100:
            sizes = [(int(w * float(argument)), int(h * float(argument))) for w, h in sizes]
    return sizes


def written_files(item: dict, count: int) -> list[Path]:
    """The old server's names: the output itself for one image, else NAME_1.EXT ... NAME_N.EXT."""
    target = Path(item["output"])
    if count == 1:
        return [target]
    return [target.with_name(f"{target.stem}_{n}{target.suffix}") for n in range(1, count + 1)]


def size_of(path: Path) -> tuple[int, int]:
    image = pyvips.Image.new_from_file(str(path))
    return image.width, image.height


def assert_old_answer(response: httpx.Response, sent: dict) -> dict:
    """200 and the request echoed, as the old server answered (tilewright's `results` alongside)."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert {key: body[key] for key in ("images", "operations")} == sent
    assert set(body) == {"images", "operations", "results"}
    return body


@pytest.mark.parametrize(
    "test, operations",
    [  # test_main.py's tests 1 to 5, as its suite sends them
        ("test1_splitting", ["splitQuadrants=True"]),
        ("test2_blur", ["blur=0"]),
        ("test3_resize", ["resize=0.5"]),
        ("test4_alloperations", ["splitQuadrants=True", "resize=1.5", "blur=25"]),
        ("test5_randomcombinations", CHAINED),
    ],
)
def test_the_old_suites_requests(client, roots, test, operations):
    sent = request_json(roots, test, operations)
    body = assert_old_answer(client.post("/items/", json=sent), sent)
    for item, result in zip(sent["images"], body["results"], strict=True):
        expected = old_sizes(*size_of(Path(item["input"])), operations)
        files = written_files(item, len(expected))
        assert [size_of(path) for path in files] == expected
        assert [Path(w["path"]) for w in result["written"]] == files
        assert [(w["width"], w["height"]) for w in result["written"]] == expected
        assert all(w["bytes"] == Path(w["path"]).stat().st_size for w in result["written"])
        loader = "pngload" if item["output"].endswith(".PNG") else "jpegload"  # the suffix names the format
        assert {pyvips.Image.new_from_file(str(path)).get("vips-loader") for path in files} == {loader}
        assert result["skipped"] == [] and result["error"] is None
    assert not list(roots[1].glob(f"{test}/.tmp-*"))


def test_out_of_range_steps_are_skipped_and_reported(client, roots):
    """test_main.py's test 6: every step out of range; the images are written as they were read."""
    operations = ["blur=-2", "resize=-0.5", "splitQuadrants=False", "resize=0"]
    sent = request_json(roots, "test6_wronginputs", operations)
    body = assert_old_answer(client.post("/items/", json=sent), sent)
    for item, result in zip(sent["images"], body["results"], strict=True):
        assert size_of(Path(item["output"])) == size_of(Path(item["input"]))
        assert [s["index"] for s in result["skipped"]] == [0, 1, 2, 3]
        assert [s["operation"] for s in result["skipped"]] == operations
    # and a skipped step does not stop the others: an even kernel (OpenCV refused it: a 500 then) is reported
    sent = request_json(roots, "test6_mixed", ["blur=4", "resize=0.5", "resize=100"], inputs=["cyclo4.jpg"])
    [result] = assert_old_answer(client.post("/items/", json=sent), sent)["results"]
    assert size_of(Path(sent["images"][0]["output"])) == (200, 163)
    assert [(s["index"], "odd" in s["reason"] or "bounds" in s["reason"]) for s in result["skipped"]] == [
        (0, True),
        (2, True),
    ]


def test_missing_folders_are_made_and_missing_inputs_reported(client, roots):
    """test_main.py's tests 7 and 8: the output folder is created; an input that is not there is skipped,
    the request still answered 200, and nothing is written for it."""
    shutil.rmtree(roots[1] / "test7_nonexistingfolder", ignore_errors=True)
    sent = request_json(roots, "test7_nonexistingfolder", ["splitQuadrants=True"])
    assert_old_answer(client.post("/items/", json=sent), sent)
    assert len(list((roots[1] / "test7_nonexistingfolder").iterdir())) == 16

    not_an_image = roots[0] / "notanimage.jpg"
    not_an_image.write_text("hello")
    mixed = request_json(roots, "test8_undecodable", ["resize=0.5"], inputs=["notanimage.jpg", "cyclo4.jpg"])
    undecodable, decoded = assert_old_answer(client.post("/items/", json=mixed), mixed)["results"]
    assert undecodable["written"] == [] and "not an image" in undecodable["error"]
    assert size_of(Path(decoded["written"][0]["path"])) == (200, 163)

    shutil.rmtree(roots[1] / "nonexistingfolder", ignore_errors=True)
    sent = request_json(roots, "nonexistingfolder", ["blur=0"], inputs=["thisdoesntexist.jpg"] * 4)
    body = assert_old_answer(client.post("/items/", json=sent), sent)
    assert all(r["written"] == [] and "does not exist" in r["error"] for r in body["results"])
    assert not (roots[1] / "nonexistingfolder").exists()


def test_blur_is_opencvs_kernel_size(client, roots):
    """blur=K: a K x K kernel of sigma 4 (cv2.BORDER_DEFAULT in sigmaX's place); 0: the kernel OpenCV derives
    from that sigma (25); 1: no blur."""
    source = roots[0] / "cyclo3.jpg"

    def blurred(operation: str) -> pyvips.Image:
        sent = {"images": [{"input": str(source), "output": f"blur/{operation}.png"}], "operations": [operation]}
        [result] = assert_old_answer(client.post("/items/", json=sent), sent)["results"]
        return pyvips.Image.new_from_file(result["written"][0]["path"])

    original = pyvips.Image.new_from_file(str(source))
    assert (blurred("blur=1") - original).abs().max() == 0
    assert (blurred("blur=0") - blurred("blur=25")).abs().max() == 0
    assert (blurred("blur=25") - original).abs().avg() > (blurred("blur=5") - original).abs().avg() > 0


def test_the_readme_example_against_serve(roots, tmp_path):
    """The README's request, absolute paths as written, to `tilewright serve`: 16 images, each a distinct
    quarter-of-a-quarter region of the original scaled back to the original's size."""
    inputs, outputs = roots
    port = free_port()
    env = clean_env(
        TILEWRIGHT_DATA_DIR=str(tmp_path / "data"),
        TILEWRIGHT_INPUT_ROOTS=f'["{inputs}"]',
        TILEWRIGHT_ITEMS_OUTPUT_ROOT=str(outputs),
    )
    server = start_server(env, port, tmp_path / "server.log")
    try:
        sent = {
            "images": [{"input": str(inputs / "cyclo4.jpg"), "output": str(outputs / "readme" / "out.jpg")}],
            "operations": CHAINED,
        }
        body = assert_old_answer(httpx.post(f"http://127.0.0.1:{port}/items/", json=sent, timeout=60), sent)
    finally:
        server.stop()
    original = pyvips.Image.new_from_file(str(inputs / "cyclo4.jpg"))  # 400 x 327
    files = written_files(sent["images"][0], 16)
    assert [Path(w["path"]) for w in body["results"][0]["written"]] == files
    assert [size_of(path) for path in files] == old_sizes(400, 327, CHAINED)
    assert {size_of(path) for path in files} == {(400, 326), (400, 328)}  # the original's size, give or take odd halves
    # output k (from 0) is quadrant k % 4 of quadrant k // 4: its region of the original, 100 x 81 or so
    regions = []
    for k in range(16):
        outer, inner = divmod(k, 4)
        x = (outer % 2) * 200 + (inner % 2) * 100
        y = (outer // 2) * 163 + (inner // 2) * (81 if outer < 2 else 82)
        regions.append(original.crop(x, y, 100, 81))

    def difference(path: Path, region: pyvips.Image) -> float:
        shrunk = pyvips.Image.new_from_file(str(path)).thumbnail_image(100, height=81, size="force")
        return (shrunk - region).abs().avg()

    for k, path in enumerate(files):
        differences = [difference(path, region) for region in regions]
        assert min(differences) == differences[k] < 12, (k, differences)


def test_outputs_only_inside_the_root_and_inputs_only_inside_the_roots(client, roots):
    """Not reproduced: the old server wrote and read wherever the request said. A 400, nothing written."""
    inputs, outputs = roots
    escape = outputs.parent / "elsewhere.jpg"
    sent = {
        "images": [
            {"input": str(inputs / "cyclo1.jpg"), "output": str(outputs / "inside" / "ok.jpg")},
            {"input": str(inputs / "cyclo1.jpg"), "output": str(escape)},
        ],
        "operations": [],
    }
    assert_error(client.post("/items/", json=sent), 403, "TILEWRIGHT_ITEMS_OUTPUT_ROOT")
    dotdot = {"images": [{"input": str(inputs / "cyclo1.jpg"), "output": "../elsewhere.jpg"}], "operations": []}
    assert_error(client.post("/items/", json=dotdot), 403, "outside the items output root")
    assert not escape.exists() and not (outputs / "inside").exists()
    outside = {"images": [{"input": str(PHOTO), "output": "x.jpg"}], "operations": []}  # not an input root here
    assert_error(client.post("/items/", json=outside), 403, "TILEWRIGHT_INPUT_ROOTS")
    unknown = {"images": [{"input": str(inputs / "cyclo1.jpg"), "output": "x.gif"}], "operations": []}
    assert_error(client.post("/items/", json=unknown), 400, "suffix")
    relative = {"images": [{"input": str(inputs / "cyclo1.jpg"), "output": "relative/x.webp"}], "operations": None}
    assert_old_answer(client.post("/items/", json=relative), relative)
    assert size_of(outputs / "relative" / "x.webp") == size_of(inputs / "cyclo1.jpg")


def test_bodies_it_could_not_run(client, roots):
    """A step the old server crashed on (500) is a 422 naming it, before anything is read; with no image it
    never read the steps, and neither does tilewright: its README's first request is answered as it was."""
    readme = {"images": [], "operations": ["string"]}
    assert assert_old_answer(client.post("/items/", json=readme), readme)["results"] == []
    item = {"input": str(roots[0] / "cyclo1.jpg"), "output": "never/x.jpg"}
    for operations, text in [
        (["string"], "METHOD=ARGUMENT"),
        (["sharpen=2"], "unknown method 'sharpen'"),
        (["resize=big"], "scaling factor"),
        (["blur=2.5"], "whole kernel size"),
    ]:
        assert_error(client.post("/items/", json={"images": [item], "operations": operations}), 422, text)
    assert not (roots[1] / "never").exists()


def test_the_readmes_split_spelling_and_a_resize_under_a_pixel(client, roots):
    """`split=True` (the README's spelling, which the old code never ran) splits like splitQuadrants; a resize
    that would leave under 1 pixel (OpenCV refused it) is skipped and reported."""
    source = roots[0] / "cyclo3.jpg"
    sent = {"images": [{"input": str(source), "output": "spelling/x.png"}], "operations": ["split=True"]}
    [result] = assert_old_answer(client.post("/items/", json=sent), sent)["results"]
    assert [(w["width"], w["height"]) for w in result["written"]] == old_sizes(
        *size_of(source), ["splitQuadrants=True"]
    )
    sent = {"images": [{"input": str(source), "output": "tiny/x.png"}], "operations": ["resize=0.05", "resize=0.05"]}
    [result] = assert_old_answer(client.post("/items/", json=sent), sent)["results"]
    assert [s["index"] for s in result["skipped"]] == [1] and "under 1 pixel" in result["skipped"][0]["reason"]
    assert size_of(Path(result["written"][0]["path"])) == old_sizes(*size_of(source), ["resize=0.05"])[0]


def test_the_default_root_and_the_limits(tmp_path, roots):
    """No ITEMS_OUTPUT_ROOT: OUTPUT_ROOT/items, served under /outputs/items/; an image over the pixel limit is
    reported and the others written; over 1000 images is a 422."""
    settings = Settings(data_dir=tmp_path, input_roots=[str(roots[0])], max_image_pixels=100_000)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        sent = request_json(roots, "unused", [], inputs=["cyclo1.jpg", "cyclo3.jpg"])
        sent["images"] = [{**item, "output": f"default/{n}.jpg"} for n, item in enumerate(sent["images"])]
        large, small = assert_old_answer(c.post("/items/", json=sent), sent)["results"]
        assert large["written"] == [] and "TILEWRIGHT_MAX_IMAGE_PIXELS" in large["error"]  # 401 x 327
        [written] = small["written"]
        assert Path(written["path"]) == settings.resolved_output_root() / "items" / "default" / "1.jpg"
        assert written["url"] == "/outputs/items/default/1.jpg" and c.get(written["url"]).status_code == 200
        many = {"images": [sent["images"][1]] * 1001, "operations": []}
        assert_error(c.post("/items/", json=many), 422, "1000")


def test_the_write_token(tmp_path, roots):
    settings = Settings(
        data_dir=tmp_path, input_roots=[str(roots[0])], items_output_root=tmp_path / "out", api_token="s3cret"
    )
    sent = {"images": [{"input": str(roots[0] / "cyclo1.jpg"), "output": "x.jpg"}], "operations": ["resize=0.5"]}
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert_error(c.post("/items/", json=sent), 401, "Bearer")
        assert not (tmp_path / "out" / "x.jpg").exists()
        assert_old_answer(c.post("/items/", json=sent, headers={"Authorization": "Bearer s3cret"}), sent)
    assert size_of(tmp_path / "out" / "x.jpg") == (200, 163)
