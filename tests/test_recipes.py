"""Recipes: the classic upload pipeline as TOML, run on plain images and slides (issue 4)."""

from __future__ import annotations

import filecmp
import json
import re
import threading
from datetime import UTC, datetime

import pytest
import pyvips
from typer.testing import CliRunner

from tilewright.cli import app
from tilewright.config import Settings
from tilewright.convert import convert
from tilewright.errors import CancelledError, InputError, LimitExceededError, OutputExistsError
from tilewright.ops import Source
from tilewright.recipes import RecipeError, list_recipes, load_recipe, parse_recipe, plan, run_recipe

PHOTO = "jpeg-png/2569067123_aca715a2ee_o.jpg"  # 2725 x 2225 RGB JPEG, 829,183 bytes
SLIDE = "svs/cmu-1-small-region.svs"  # 2220 x 2967 Aperio


def size_of(path) -> tuple[int, int]:
    image = pyvips.Image.new_from_file(str(path))
    return image.width, image.height


def test_default_recipe_on_a_photo(testdata, tmp_path):
    source = testdata(PHOTO)
    outdir = tmp_path / "out"
    before = datetime.now(UTC).replace(microsecond=0)
    metadata = run_recipe(source, outdir)
    after = datetime.now(UTC)

    names = sorted(p.name for p in outdir.iterdir())
    assert names == [
        "metadata.json",
        "optimized.jpg",
        "thumbnail_large.jpg",
        "thumbnail_medium.jpg",
        "thumbnail_small.jpg",
        "watermarked.jpg",
    ]
    expected = {
        "thumbnail_small": (150, 122),
        "thumbnail_medium": (300, 245),
        "thumbnail_large": (600, 490),
        "optimized": (1920, 1568),
        "watermarked": (2725, 2225),
    }
    for name, size in expected.items():
        assert size_of(outdir / f"{name}.jpg") == size
    # colour at half resolution everywhere, as the Pillow pipeline wrote it (quality 90 included)
    assert {pyvips.Image.new_from_file(str(p)).get("jpeg-chroma-subsample") for p in outdir.glob("*.jpg")} == {"4:2:0"}
    assert json.loads((outdir / "metadata.json").read_text()) == metadata

    processed = datetime.fromisoformat(metadata.pop("processed_at").replace("Z", "+00:00"))
    assert before <= processed <= after
    outputs = metadata.pop("outputs")
    assert metadata == {
        "filename": source.name,
        "width": 2725,
        "height": 2225,
        "size": [2725, 2225],
        "format": "jpeg",
        "mode": "RGB",
        "bytes": 829183,
        "recipe": "default",
        "slide": False,
    }
    assert [o["name"] for o in outputs] == list(expected)
    for entry in outputs:
        written = (outdir / entry["file"]).stat().st_size
        assert entry["bytes"] == written
        assert entry["compression_ratio"] == round(829183 / written, 4)
        assert tuple(entry["size"]) == (entry["width"], entry["height"]) == expected[entry["name"]]
        assert entry["format"] == "jpeg"


def test_rgba_png_is_flattened_on_white_and_mode_reported(tmp_path):
    xy = pyvips.Image.xyz(400, 200)
    rgba = (
        (pyvips.Image.black(400, 200, bands=3) + [0, 0, 255])
        .cast("uchar")
        .bandjoin(((xy[0] >= 200) * 255).cast("uchar"))
        .copy(interpretation="srgb")
    )  # left half transparent
    source = tmp_path / "half.png"
    rgba.pngsave(str(source))
    metadata = run_recipe(source, tmp_path / "out")
    assert metadata["mode"] == "RGBA" and metadata["format"] == "png"
    for name in ("thumbnail_small", "optimized"):
        image = pyvips.Image.new_from_file(str(tmp_path / "out" / f"{name}.jpg"))
        assert image.bands == 3
        left, right = image.getpoint(2, image.height // 2), image.getpoint(image.width - 3, image.height // 2)
        assert min(left) > 245  # transparent -> white
        assert right[2] > 200 and right[0] < 40  # opaque blue stays blue


def test_slides_get_thumbnails_from_the_pyramid_and_a_dzi(testdata, tmp_path):
    outdir = tmp_path / "slide"
    metadata = run_recipe(testdata(SLIDE), outdir)
    assert metadata["slide"] is True and metadata["format"] == "aperio"
    assert (outdir / "pyramid.dzi").is_file() and (outdir / "pyramid_files").is_dir()
    entry = {o["name"]: o for o in metadata["outputs"]}
    assert entry["pyramid"]["kind"] == "dzi" and entry["pyramid"]["tiles"] > 100
    assert size_of(outdir / "thumbnail_small.jpg") == (112, 150)
    assert size_of(outdir / "optimized.jpg") == (1437, 1920)


def test_slide_thumbnail_reads_the_smallest_fitting_level(big_pyramid):
    from tilewright.ops import Source

    with Source(big_pyramid) as source:
        assert source.is_slide and len(source.reader.levels) > 3
        levels_read = []
        original = source.reader.level_image

        def spy(level=0, **kw):
            levels_read.append(level)
            return original(level, **kw)

        source.reader.level_image = spy
        thumb = source.thumbnail(300, 300)
        assert (thumb.width, thumb.height) == (300, 250)
        level = source.reader.levels[levels_read[0]]
        assert levels_read[0] > 0 and level.width >= 300 and level.width < 1200


def test_giant_jpeg_is_thumbnailed_by_shrink_on_load(testdata):
    """giant-image.jpg is 20,000 x 14,000 (280 Mpx): the thumbnail never decodes it whole."""
    import resource

    from tilewright.ops import Source

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with Source(testdata("jpeg-png/giant-image.jpg")) as source:
        thumb = source.thumbnail(600, 600).copy_memory()
    assert (thumb.width, thumb.height) == (600, 420)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: far below 280 MB


def test_existing_outputs_need_overwrite_and_publishing_is_atomic(testdata, tmp_path):
    source = testdata("jpeg-png/boxes.png")
    outdir = tmp_path / "out"
    run_recipe(source, outdir)
    first = (outdir / "metadata.json").read_text()
    with pytest.raises(OutputExistsError):
        run_recipe(source, outdir)
    assert (outdir / "metadata.json").read_text() == first
    run_recipe(source, outdir, overwrite=True)
    assert json.loads((outdir / "metadata.json").read_text())["filename"] == "boxes.png"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tw-")]


@pytest.mark.parametrize(
    "relative, error",
    [
        ("broken/truncated.jpg", InputError),
        ("broken/broken.svs", InputError),
        (PHOTO, LimitExceededError),  # over a tiny max_image_pixels
    ],
)
def test_bad_inputs_publish_nothing(testdata, tmp_path, relative, error):
    outdir = tmp_path / "out"
    with pytest.raises(error):
        run_recipe(testdata(relative), outdir, settings=Settings(max_image_pixels=10**6))
    assert not outdir.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging left behind


def test_a_truncated_photo_fails_in_the_words_convert_uses(testdata, tmp_path):
    """The thumbnail kept in memory (`copy_memory`) met the truncation first: its "unable to copy to
    memory" wrapper once hid libvips' reason; the recipe now says what `tilewright convert` says."""
    source = testdata("broken/truncated.jpg")
    with pytest.raises(InputError) as recipe_error:
        run_recipe(source, tmp_path / "out")
    with pytest.raises(InputError) as convert_error:
        convert(source, tmp_path / "slide", "dzi")
    assert recipe_error.value.reason == convert_error.value.reason
    assert recipe_error.value.reason == "image data is corrupt or truncated: VipsJpeg: premature end of JPEG image"


def test_cancel_and_time_limit_publish_nothing(testdata, tmp_path):
    with pytest.raises(CancelledError):
        run_recipe(testdata(PHOTO), tmp_path / "a", cancelled=lambda: True)
    with pytest.raises(CancelledError, match="time limit"):
        run_recipe(testdata(PHOTO), tmp_path / "b", settings=Settings(time_limit_seconds=0.0))
    assert list(tmp_path.iterdir()) == []


def test_progress_is_reported_up_to_done(testdata, tmp_path):
    seen = []
    run_recipe(testdata("jpeg-png/boxes.png"), tmp_path / "out", progress=lambda f, s: seen.append((f, s)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and seen[-1] == (1.0, "done")
    assert {"thumbnail_small", "watermarked", "metadata", "publish"} <= {s for _, s in seen}


def test_watermark_text_comes_from_settings(testdata, tmp_path):
    settings = Settings(watermark_text="CONFIDENTIAL")
    recipe = load_recipe("default", settings)
    step = [s for o in recipe.outputs for s in o.steps if s.op == "watermark"][0]
    assert step.params["text"] == "CONFIDENTIAL" and step.params["position"] == "bottom-right"
    assert 0 < step.params["opacity"] < 1


def test_user_recipes_split_and_formats(testdata, tmp_path):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "tiles.toml").write_text(
        'description = "quadrants"\n'
        '[[outputs]]\nname = "part"\nops = ["split", "split"]\nformat = "png"\n'
        '[[outputs]]\nname = "small"\nops = [{ op = "resize", width = 100 }, "blur=1"]\nformat = "webp"\n'
        "quality = 60\n"
    )
    settings = Settings(recipe_dir=folder)
    assert {"default", "tiles"} <= set(list_recipes(settings))
    metadata = run_recipe(testdata("jpeg-png/gradients-rgb8.png"), tmp_path / "out", "tiles", settings)
    files = sorted(o["file"] for o in metadata["outputs"])
    assert files == sorted([f"part_{i}.png" for i in range(16)] + ["small.webp"])
    assert sum(o["width"] * o["height"] for o in metadata["outputs"] if o["name"] == "part") == 1000 * 1000


@pytest.mark.parametrize(
    "data, words",
    [
        ({"outputs": []}, "outputs"),
        ({"outputs": [{"name": "a", "ops": ["blur=-2"]}]}, "output 'a': operation 0 (blur): sigma"),
        ({"outputs": [{"name": "a", "ops": ["nope"]}]}, "unknown operation"),
        ({"outputs": [{"name": "../evil"}]}, "name"),
        ({"outputs": [{"name": "a"}, {"name": "a"}]}, "used twice"),
        ({"outputs": [{"name": "a", "colour": "red"}]}, "colour"),
        ({"outputs": [{"name": "p", "kind": "dzi", "ops": ["blur=1"]}]}, "takes no ops"),
        ({"outputs": [{"name": "a", "format": "png", "chroma": "420"}]}, "chroma is a JPEG setting"),
        ({"outputs": [{"name": "a", "format": "jpeg", "chroma": "411"}]}, "outputs.0.chroma"),
    ],
)
def test_bad_recipes_are_refused(data, words):
    with pytest.raises(RecipeError, match=re.escape(words)):
        parse_recipe(data, "bad")


def test_recipe_names_cannot_escape_the_recipe_folders(tmp_path):
    with pytest.raises(RecipeError, match="letters, digits"):
        load_recipe("../../etc/passwd")
    with pytest.raises(RecipeError, match="unknown recipe 'nope'"):
        load_recipe("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("outputs = [")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(bad)


def test_cli_process(testdata, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["process", str(testdata("jpeg-png/boxes.png")), "-o", str(tmp_path / "o"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["filename"] == "boxes.png"
    again = runner.invoke(app, ["process", str(testdata("jpeg-png/boxes.png")), "-o", str(tmp_path / "o")])
    assert again.exit_code == 3 and "overwrite" in again.stderr
    chain = runner.invoke(
        app,
        [
            "process",
            str(testdata("jpeg-png/boxes.png")),
            "-o",
            str(tmp_path / "c"),
            "--op",
            "split",
            "--op",
            "resize=0.5",
            "--format",
            "png",
        ],
    )
    assert chain.exit_code == 0, chain.output
    assert sorted(p.name for p in (tmp_path / "c").iterdir())[:2] == ["boxes_0.png", "boxes_1.png"]
    bad = runner.invoke(
        app, ["process", str(testdata("jpeg-png/boxes.png")), "-o", str(tmp_path / "d"), "--op", "blur=sigma:1,size:4"]
    )
    assert bad.exit_code == 2 and "operation 0 (blur): size" in bad.stderr


# -- how the outputs are made: lanes side by side, decode-once (issue 4, performance) ---------------


def _photo_png(path, width=1200, height=800, orientation=6):
    """An RGBA PNG with smooth detail, half transparent at the left, and an EXIF orientation."""
    xy = pyvips.Image.xyz(width, height)
    rgb = (
        (xy[0] * 255 / width)
        .cast("uchar")
        .bandjoin([(xy[1] * 255 / height).cast("uchar"), ((xy[0] * xy[1]) % 251).cast("uchar")])
    )
    image = rgb.bandjoin(((xy[0] >= width // 4) * 255).cast("uchar")).copy(interpretation="srgb")
    if orientation:
        image = image.copy()
        image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    image.pngsave(str(path))
    return path


_MIXED = {
    "outputs": [  # the default recipe's outputs, and chains that read the source out of order
        {"name": "thumbnail_small", "ops": ["thumbnail=150x150", "flatten=white"]},
        {"name": "thumbnail_large", "ops": ["thumbnail=600x600", "flatten=white"]},
        {"name": "optimized", "ops": ["thumbnail=1920x1920", "flatten=white"]},
        {"name": "upright", "ops": ["auto_orient", "thumbnail=500", "flatten=white"]},
        {
            "name": "watermarked",
            "ops": ["thumbnail=65500x65500", "flatten=white", {"op": "watermark", "text": "(c)"}],
            "quality": 90,
        },
        {"name": "turned", "ops": ["rotate=90", "resize=0.5"], "format": "png"},
        {"name": "part", "ops": ["split", "blur=1"], "format": "webp"},
    ]
}


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _same_outputs(a, b) -> None:
    assert _files(a) == _files(b)
    for name in _files(a):
        if name == "metadata.json":
            first, second = json.loads((a / name).read_text()), json.loads((b / name).read_text())
            first.pop("processed_at"), second.pop("processed_at")
            assert first == second
        else:
            assert filecmp.cmp(a / name, b / name, shallow=False), name


def test_decode_once_gives_identical_outputs_and_removes_its_copy(tmp_path, monkeypatch):
    """A PNG (no shrink-on-load) decoded once into a temporary file gives byte-identical outputs."""
    source = _photo_png(tmp_path / "in.png")
    recipe = parse_recipe(_MIXED, "mixed")
    copies = []
    original = Source.decode_to

    def spy(self, path, watch=None):
        original(self, path, watch)
        copies.append(path)
        assert path.is_file() and path.parent.name.startswith(".tw-staging-out-once")
        assert self.decoded

    monkeypatch.setattr(Source, "decode_to", spy)
    monkeypatch.setattr(plan, "DECODE_ONCE_PIXELS", 10**12)
    run_recipe(source, tmp_path / "out-direct", recipe)
    assert copies == []
    monkeypatch.setattr(plan, "DECODE_ONCE_PIXELS", 0)
    run_recipe(source, tmp_path / "out-once", recipe)
    assert len(copies) == 1 and not copies[0].exists()

    _same_outputs(tmp_path / "out-direct", tmp_path / "out-once")
    assert size_of(tmp_path / "out-once" / "upright.jpg") == (333, 500)  # orientation 6 honoured from the copy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out-direct", "out-once"]  # nothing left


def test_decode_once_only_when_it_pays(tmp_path, monkeypatch):
    """Decoded once: a large source without shrink-on-load read by more lanes than run at once, or out of order."""
    png = Source(_photo_png(tmp_path / "in.png", 2400, 1600, orientation=0))
    pyvips.Image.new_from_file(str(png.path)).flatten().jpegsave(str(tmp_path / "in.jpg"))
    jpeg = Source(tmp_path / "in.jpg")
    default = [o for o in load_recipe("default").outputs if o.kind == "image"]
    turned = parse_recipe({"outputs": [{"name": "t", "ops": ["rotate=90"]}]}).outputs
    monkeypatch.setattr(plan, "DECODE_ONCE_PIXELS", 0)
    monkeypatch.setattr(plan, "PARALLEL_OUTPUTS", 2)
    assert not png.shrinks_on_load and jpeg.shrinks_on_load
    assert not plan.decode_once(png, plan.plan_lanes(png, default))  # two lanes, two at once
    assert plan.decode_once(png, plan.plan_lanes(png, turned))  # out of order
    assert not plan.decode_once(jpeg, plan.plan_lanes(jpeg, turned))  # JPEG: shrink-on-load
    monkeypatch.setattr(plan, "PARALLEL_OUTPUTS", 1)
    assert plan.decode_once(png, plan.plan_lanes(png, default))
    monkeypatch.setattr(plan, "DECODE_ONCE_MAX_BYTES", 2400 * 1600 * 4 - 1)  # RGBA: one byte too many
    assert not plan.decode_once(png, plan.plan_lanes(png, turned))  # the mapped copy would be too large
    monkeypatch.setattr(plan, "DECODE_ONCE_MAX_BYTES", 2400 * 1600 * 4)
    assert plan.decode_once(png, plan.plan_lanes(png, turned))
    monkeypatch.setattr(plan, "DECODE_ONCE_PIXELS", 10**12)
    assert not plan.decode_once(png, plan.plan_lanes(png, turned))  # small: not worth a copy
    png.close(), jpeg.close()


def test_default_recipe_lanes(testdata):
    """The thumbnails share one shrink-on-load decode; the full-size copy streams in a lane of its own."""
    with Source(testdata(PHOTO)) as source:
        lanes = plan.plan_lanes(source, [o for o in load_recipe("default").outputs if o.kind == "image"])
    assert [[o.name for o in lane.outputs] for lane in lanes] == [
        ["watermarked"],
        ["optimized", "thumbnail_large", "thumbnail_medium", "thumbnail_small"],
    ]
    assert [lane.shared for lane in lanes] == [False, True]


@pytest.mark.parametrize("failing", ["decode", "output"])
def test_decode_once_copy_is_removed_on_failure(testdata, tmp_path, monkeypatch, failing):
    monkeypatch.setattr(plan, "DECODE_ONCE_PIXELS", 0)
    monkeypatch.setattr(plan, "PARALLEL_OUTPUTS", 1)
    copies = []
    original = Source.decode_to

    def spy(self, path, watch=None):
        copies.append(path)
        original(self, path, watch)

    monkeypatch.setattr(Source, "decode_to", spy)
    work = tmp_path / "work"
    work.mkdir()
    if failing == "decode":  # the header reads, the pixels do not
        source, recipe, error = (
            testdata("broken/truncated.png"),
            "default",
            "image data is corrupt or truncated: vipspng",
        )
    else:
        source = _photo_png(tmp_path / "in.png")
        recipe = parse_recipe(
            {
                "outputs": [
                    {"name": "t", "ops": ["rotate=90"]},
                    {"name": "w", "ops": [{"op": "watermark", "logo": "/nope.png"}]},
                ]
            }
        )
        error = "no such file"
    with pytest.raises(InputError, match=error):
        run_recipe(source, work / "out", recipe)
    assert len(copies) == 1 and not copies[0].exists()
    assert list(work.iterdir()) == []


def test_cancel_while_decoding_once_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "DECODE_ONCE_PIXELS", 0)
    monkeypatch.setattr(plan, "PARALLEL_OUTPUTS", 1)
    source = _photo_png(tmp_path / "in.png", 3000, 2000)
    stop = threading.Event()

    def progress(fraction, stage):
        if stage == "decode":
            stop.set()

    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(CancelledError):
        run_recipe(source, work / "out", "default", progress=progress, cancelled=stop.is_set)
    assert list(work.iterdir()) == []


def test_lanes_side_by_side_match_one_at_a_time(testdata, tmp_path, monkeypatch):
    threads = set()

    def progress(fraction, stage):
        threads.add(threading.current_thread().name.split("_")[0])

    monkeypatch.setattr(plan, "PARALLEL_OUTPUTS", 1)
    run_recipe(testdata(PHOTO), tmp_path / "one", progress=progress)
    assert threads == {"MainThread"}
    monkeypatch.setattr(plan, "PARALLEL_OUTPUTS", 2)
    seen = []
    run_recipe(testdata(PHOTO), tmp_path / "two", progress=lambda f, s: (progress(f, s), seen.append(f)))
    assert "tw-recipe" in threads
    assert seen == sorted(seen) and seen[-1] == 1.0
    _same_outputs(tmp_path / "one", tmp_path / "two")


def test_a_failing_lane_stops_the_others_and_publishes_nothing(testdata, tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "PARALLEL_OUTPUTS", 2)
    recipe = parse_recipe(
        {
            "outputs": [
                {"name": "big", "ops": ["resize=2", "blur=3"]},
                {"name": "bad", "ops": ["thumbnail=100", {"op": "watermark", "logo": str(tmp_path / "missing.png")}]},
            ]
        }
    )
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(InputError, match="operation 1 \\(watermark\\): logo: no such file"):
        run_recipe(testdata(PHOTO), work / "out", recipe)
    assert list(work.iterdir()) == []
