"""Operations: each is a pure function on a pyvips image with checked parameters (issue 4)."""

from __future__ import annotations

import numpy as np
import pytest
import pyvips

from tilewright import ops
from tilewright.imaging.eight_bit import to_eight_bit
from tilewright.ops import OperationError, apply_chain, encode, parse_chain


def gradient(width: int = 400, height: int = 300, bands: int = 3) -> pyvips.Image:
    """A smooth test image: distinct values everywhere, no flat areas."""
    xy = pyvips.Image.xyz(width, height)
    r = (xy[0] * 255 / max(1, width - 1)).cast("uchar")
    g = (xy[1] * 255 / max(1, height - 1)).cast("uchar")
    b = ((xy[0] + xy[1]) % 256).cast("uchar")
    image = r.bandjoin([g, b]).copy(interpretation="srgb")
    return image if bands == 3 else image.bandjoin((xy[0] % 256).cast("uchar"))


def checkerboard(size: int = 256, cell: int = 2) -> pyvips.Image:
    xy = pyvips.Image.xyz(size, size)
    grey = ((((xy[0] // cell) + (xy[1] // cell)) % 2) * 255).cast("uchar").copy(interpretation="b-w")
    return grey


def array(image: pyvips.Image) -> np.ndarray:
    return np.ndarray(buffer=image.write_to_memory(), dtype=np.uint8, shape=(image.height, image.width, image.bands))


def run(image: pyvips.Image, *chain) -> list[pyvips.Image]:
    return apply_chain(image, parse_chain(list(chain)))


# -- parsing ------------------------------------------------------------------------------


def test_parse_chain_reads_strings_shorthands_and_mappings():
    steps = parse_chain(
        [
            "split",
            "resize=0.5",
            "blur=5",
            {"op": "resize", "scale": 0.5},
            "resize=300x200",
            "resize=300x200!",
            "crop=1,2,30,40",
            "blur=sigma:2,size:7",
        ]
    )
    assert [s.to_dict() for s in steps] == [
        {"op": "split"},
        {"op": "resize", "scale": 0.5},
        {"op": "blur", "sigma": 5.0},
        {"op": "resize", "scale": 0.5},
        {"op": "resize", "width": 300, "height": 200},
        {"op": "resize", "width": 300, "height": 200, "mode": "exact"},
        {"op": "crop", "x": 1, "y": 2, "width": 30, "height": 40},
        {"op": "blur", "sigma": 2.0, "size": 7},
    ]
    assert [s.index for s in steps] == list(range(8))


@pytest.mark.parametrize(
    "spec, index, op, param, words",
    [
        (["flatten", "sharpen=2"], 1, "sharpen", None, "unknown operation"),
        (["resize=abc"], 0, "resize", "scale", "resize takes a factor"),
        (["flatten", "flatten", "blur=-1"], 2, "blur", "sigma", "greater than or equal to 0"),
        ([{"op": "crop", "x": 1, "y": 1, "width": 5}], 0, "crop", "height", "missing parameter"),
        ([{"op": "blur", "sigma": 1, "radius": 2}], 0, "blur", "radius", "unknown parameter 'radius'"),
        (["format=bmp"], 0, "format", "format", "'jpeg'"),
        (["quality=0"], 0, "quality", "quality", "greater than or equal to 1"),
        (["rotate=400"], 0, "rotate", "angle", "less than 360"),
        ([{"op": "watermark", "text": "x", "opacity": 1.5}], 0, "watermark", "opacity", "less than or equal to 1"),
        (["flatten=notacolour"], 0, "flatten", "background", "colour must be"),
        ([{"scale": 2}], 0, None, None, 'needs an "op"'),
        (["strip=yes"], 0, "strip", None, "takes no parameters"),
    ],
)
def test_bad_steps_are_refused_naming_the_step_and_parameter(spec, index, op, param, words):
    with pytest.raises(OperationError) as caught:
        steps = parse_chain(spec)
        apply_chain(gradient(), steps)  # some checks (colours) are made when the step runs
    error = caught.value
    assert (error.index, error.op, error.param) == (index, op, param)
    assert words in str(error)
    assert error.http_status == 400 and error.exit_code == 2


@pytest.mark.parametrize(
    "spec, param, words",
    [
        ([{"op": "resize", "scale": 0.5, "width": 10}], "scale", "not both"),
        (["resize"], "scale", "give a scale factor"),
        ([{"op": "resize", "width": 10, "mode": "exact"}], "height", "needs both"),
        (["crop=390,0,20,20"], "width", "past the image's width"),
        (["crop=0,400,20,20"], "y", "outside the image"),
        (["blur=sigma:1,size:4"], "size", "must be odd"),
        (["blur=0"], "sigma", "give a sigma"),
        (["watermark"], "text", "either text or logo"),
        ([{"op": "watermark", "logo": "/no/such/logo.png"}], "logo", "no such file"),
    ],
)
def test_checks_that_need_the_image_fail_when_the_step_runs(spec, param, words):
    steps = parse_chain(spec)
    with pytest.raises(OperationError) as caught:
        apply_chain(gradient(), steps)
    assert caught.value.param == param and caught.value.index == 0
    assert words in str(caught.value)


def test_a_step_may_not_enlarge_an_image_past_the_pixel_limit():
    from tilewright.config import Settings

    with pytest.raises(OperationError) as caught:
        apply_chain(gradient(), parse_chain(["resize=100"]), Settings(max_image_pixels=10**6))
    assert caught.value.http_status == 413 and "TILEWRIGHT_MAX_IMAGE_PIXELS" in str(caught.value)


# -- geometry -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, size",
    [
        ("resize=0.5", (200, 150)),
        ("resize=2", (800, 600)),
        ("resize=25%", (100, 75)),
        ("resize=100x100", (100, 75)),  # fit inside, aspect kept
        ("resize=1000x100", (133, 100)),
        ("resize=100x", (100, 75)),
        ("resize=x60", (80, 60)),
        ("resize=800x800", (800, 600)),  # resize may enlarge
        ("resize=123x45!", (123, 45)),  # exact
        ("thumbnail=150", (150, 113)),
        ("thumbnail=1000x1000", (400, 300)),  # thumbnail never enlarges
        ("crop=10,20,30,40", (30, 40)),
        ("rotate=90", (300, 400)),
        ("rotate=-90", (300, 400)),
        ("flip=v", (400, 300)),
    ],
)
def test_output_sizes(spec, size):
    (out,) = run(gradient(400, 300), spec)
    assert (out.width, out.height) == size


def test_fit_keeps_the_aspect_ratio_within_rounding():
    for box in (150, 300, 600, 1920):
        (out,) = run(gradient(2725, 2225), f"thumbnail={box}x{box}")
        assert max(out.width, out.height) == box
        assert abs(out.width / out.height - 2725 / 2225) < 2 / out.height


def test_rotate_and_flip_move_pixels_where_expected():
    image = gradient(40, 30)
    source = array(image)
    (turned,) = run(image, "rotate=90")
    assert np.array_equal(array(turned), np.rot90(source, k=-1))  # clockwise
    (mirrored,) = run(image, "flip=horizontal")
    assert np.array_equal(array(mirrored), source[:, ::-1])
    (both,) = run(image, "flip=both")
    assert np.array_equal(array(both), source[::-1, ::-1])


def test_crop_takes_exactly_the_region():
    image = gradient(400, 300)
    (region,) = run(image, {"op": "region", "x": 10, "y": 20, "width": 30, "height": 40})
    assert np.array_equal(array(region), array(image)[20:60, 10:40])


@pytest.mark.parametrize("width, height", [(400, 300), (401, 299)])
def test_split_gives_4_then_16_images_covering_the_source_exactly(width, height):
    image = gradient(width, height)
    source = array(image)
    four = run(image, "split")
    assert len(four) == 4
    top = np.concatenate([array(four[0]), array(four[1])], axis=1)
    bottom = np.concatenate([array(four[2]), array(four[3])], axis=1)
    assert np.array_equal(np.concatenate([top, bottom], axis=0), source)

    sixteen = run(image, "split", "split")
    assert len(sixteen) == 16
    assert sum(q.width * q.height for q in sixteen) == width * height
    rebuilt = []
    for quadrant in range(4):  # each group of four tiles one quadrant
        part = [array(q) for q in sixteen[quadrant * 4 : quadrant * 4 + 4]]
        rebuilt.append(np.concatenate([np.concatenate(part[:2], axis=1), np.concatenate(part[2:], axis=1)], axis=0))
    whole = np.concatenate([np.concatenate(rebuilt[:2], axis=1), np.concatenate(rebuilt[2:], axis=1)], axis=0)
    assert np.array_equal(whole, source)


def test_split_refuses_a_single_pixel_row():
    with pytest.raises(OperationError, match="cannot split"):
        run(gradient(10, 1), "split")


def test_auto_orient_follows_the_exif_tag(tmp_path):
    image = gradient(40, 30).copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", 6)  # "rotate 90 clockwise to view"
    path = tmp_path / "turned.jpg"
    image.jpegsave(str(path))
    loaded = pyvips.Image.new_from_file(str(path))
    (upright,) = run(loaded, "auto_orient")
    assert (upright.width, upright.height) == (30, 40)
    assert "orientation" not in upright.get_fields() or upright.get("orientation") == 1


# -- pixels -------------------------------------------------------------------------------


def high_frequency_energy(image: pyvips.Image) -> float:
    pixels = array(image).astype(float)[..., 0]
    return float(np.abs(np.diff(pixels, axis=1)).mean() + np.abs(np.diff(pixels, axis=0)).mean())


@pytest.mark.parametrize(
    "spec", ["blur=1", "blur=5", "blur=sigma:0,size:7", "blur=sigma:2,size:0", "blur=sigma:2,size:13"]
)
def test_blur_reduces_high_frequency_energy(spec):
    board = checkerboard()
    (blurred,) = run(board, spec)
    assert (blurred.width, blurred.height, blurred.bands, blurred.format) == (256, 256, 1, "uchar")
    assert high_frequency_energy(blurred) < 0.5 * high_frequency_energy(board)


def test_a_larger_sigma_blurs_more():
    board = checkerboard(cell=8)
    energies = [high_frequency_energy(run(board, f"blur={s}")[0]) for s in (0.5, 2, 6)]
    assert energies[0] > energies[1] > energies[2]


def test_flatten_puts_rgba_on_white():
    xy = pyvips.Image.xyz(64, 64)
    red = pyvips.Image.black(64, 64).new_from_image([255, 0, 0]).cast("uchar")
    alpha = (xy[0] * 4).cast("uchar")  # transparent on the left, nearly opaque on the right
    rgba = red.bandjoin(alpha).copy(interpretation="srgb")
    (flat,) = run(rgba, "flatten")
    pixels = array(flat)
    assert flat.bands == 3
    assert pixels[0, 0].tolist() == [255, 255, 255]  # fully transparent -> white
    assert pixels[0, 63, 0] == 255 and pixels[0, 63, 1] < 10  # nearly opaque -> red
    (black,) = run(rgba, "flatten=#000000")
    assert array(black)[0, 0].tolist() == [0, 0, 0]
    opaque = gradient(64, 64)
    assert run(opaque, "flatten")[0] is opaque or np.array_equal(array(run(opaque, "flatten")[0]), array(opaque))


def test_watermark_changes_pixels_only_in_its_region_bottom_right():
    image = gradient(800, 600)
    (marked,) = run(image, {"op": "watermark", "text": "tilewright", "opacity": 0.5})
    assert (marked.width, marked.height, marked.bands) == (800, 600, 3)
    changed = np.argwhere((array(marked) != array(image)).any(axis=2))
    assert len(changed) > 500
    (top, left), (bottom, right) = changed.min(axis=0), changed.max(axis=0)
    font = max(12, 800 // 20)  # width/20 with a floor
    assert right < 800 and bottom < 600
    assert left > 400 and top > 600 - 3 * font  # bottom right
    assert bottom - top <= 2 * font


def test_watermark_positions_opacity_and_font_floor():
    image = gradient(200, 150)
    (corner,) = run(image, {"op": "watermark", "text": "abc", "position": "top-left"})
    changed = np.argwhere((array(corner) != array(image)).any(axis=2))
    assert changed.max(axis=0)[0] < 75 and changed.max(axis=0)[1] < 100
    faint, strong = (
        array(run(image, {"op": "watermark", "text": "abc", "opacity": o, "colour": "#ffffff"})[0]) for o in (0.2, 1.0)
    )
    assert np.abs(faint.astype(int) - array(image)).max() < np.abs(strong.astype(int) - array(image)).max()
    from tilewright.ops.watermark import font_size_for

    assert font_size_for(100) == 12 and font_size_for(4000) == 200


def test_image_watermark(tmp_path):
    logo = tmp_path / "logo.png"
    (pyvips.Image.black(50, 20) + 255).cast("uchar").bandjoin(255).copy(interpretation="b-w").pngsave(str(logo))
    image = gradient(400, 300)
    (marked,) = run(image, {"op": "watermark", "logo": str(logo), "opacity": 1.0, "logo_scale": 0.25})
    changed = np.argwhere((array(marked) != array(image)).any(axis=2))
    (top, left), (bottom, right) = changed.min(axis=0), changed.max(axis=0)
    assert (right - left + 1, bottom - top + 1) == (100, 40)  # 1/4 of the width, aspect kept
    assert right > 300 and bottom > 200


def test_watermark_on_grey_and_rgba_keeps_the_bands():
    (grey,) = run(checkerboard(), {"op": "watermark", "text": "x"})
    assert grey.bands == 1
    (rgba,) = run(gradient(bands=4), {"op": "watermark", "text": "x"})
    assert rgba.bands == 4


# -- encoding ------------------------------------------------------------------------------


def test_format_quality_and_strip_drive_the_encoder(testdata):
    image = to_eight_bit(pyvips.Image.new_from_file(str(testdata("jpeg-png/2569067123_aca715a2ee_o.jpg"))))
    steps = ["thumbnail=600"]
    high = encode(run(image, *steps, "quality=95")[0])
    low = encode(run(image, *steps, "quality=30")[0])
    assert high.format == low.format == "jpeg" and high.media_type == "image/jpeg"
    assert len(low.data) < len(high.data)  # quality lowers bytes
    webp = encode(run(image, *steps, "format=webp")[0])
    assert webp.data[8:12] == b"WEBP" and webp.extension == ".webp"
    png = encode(run(image, *steps, "convert=png")[0])
    assert png.data[:4] == b"\x89PNG"
    kept = encode(run(image, *steps)[0])
    stripped = encode(run(image, *steps, "strip")[0])
    assert "exif-data" in pyvips.Image.new_from_buffer(kept.data, "").get_fields()
    assert "exif-data" not in pyvips.Image.new_from_buffer(stripped.data, "").get_fields()


def test_encoding_choices_survive_later_steps():
    (out,) = run(gradient(), "format=png", "resize=0.5", "blur=1", "watermark=hi", "rotate=90")
    assert encode(out).format == "png"


def test_avif_when_the_wheel_has_it():
    if not ops.have_avif():
        with pytest.raises(OperationError, match="AVIF"):
            run(gradient(), "format=avif")
        return
    (out,) = run(gradient(64, 48), "format=avif")
    encoded = encode(out)
    assert encoded.media_type == "image/avif" and encoded.data[4:8] == b"ftyp"


def test_jpeg_flattens_alpha_on_white():
    rgba = gradient(bands=4)
    encoded = encode(rgba)
    decoded = pyvips.Image.new_from_buffer(encoded.data, "")
    assert decoded.bands == 3


def test_registry_names_every_operation_in_the_issue():
    assert set(ops.OPS) >= {
        "resize",
        "thumbnail",
        "crop",
        "split",
        "blur",
        "watermark",
        "flatten",
        "rotate",
        "flip",
        "format",
        "quality",
        "strip",
        "auto_orient",
    }
    for name, op in ops.OPS.items():
        assert op.doc, f"{name} needs a docstring: docs/ops.md is made from them"


# -- sources: decode once --------------------------------------------------------------------


def test_source_decoded_once_reads_the_same_pixels_and_metadata(testdata, tmp_path):
    """A copy decoded once gives what the file gives: pixels, EXIF orientation, every metadata field."""
    from tilewright.ops import Source

    image = gradient(640, 480, bands=4).copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", 6)
    image.pngsave(str(tmp_path / "in.png"))
    with Source(tmp_path / "in.png") as source:
        assert not source.shrinks_on_load and not source.decoded
        full, thumb = source.full(), source.thumbnail(200, 200, orient=True)
        fields = {name: full.get(name) for name in full.get_fields() if name != "filename"}  # libvips' own name
        expected = (array(full), array(thumb))
        copy = tmp_path / "copy.v"
        source.decode_to(copy)
        assert source.decoded and copy.is_file()
        again = source.full(sequential=False)
        assert {name: again.get(name) for name in again.get_fields() if name != "filename"} == fields
        assert (thumb.width, thumb.height) == (150, 200)
        assert np.array_equal(array(again), expected[0])
        assert np.array_equal(array(source.thumbnail(200, 200, orient=True)), expected[1])
        assert np.array_equal(array(source.full().rot90()), np.rot90(expected[0], -1))  # random access, any order
        source.release_decoded()
        assert not source.decoded
        copy.unlink()
        assert np.array_equal(array(source.full()), expected[0])  # the file again

    with Source(testdata("broken/truncated.png")) as broken:
        with pytest.raises(pyvips.Error):
            broken.decode_to(tmp_path / "broken.v")
        assert not (tmp_path / "broken.v").exists() and not broken.decoded
    with Source(testdata("jpeg-png/2569067123_aca715a2ee_o.jpg")) as jpeg:
        assert jpeg.shrinks_on_load


@pytest.mark.parametrize(
    ("chain", "expected"),
    [
        (["thumbnail=200x100", "blur=1"], (200, 100, False, ["blur"])),
        (["auto_orient", "thumbnail=150"], (150, 150, True, [])),
        (["auto_orient", "auto_orient", "thumbnail=150"], None),  # only one auto_orient may come first
        (["resize=0.5", "thumbnail=150"], None),
        (["auto_orient"], None),
        ([], None),
    ],
)
def test_a_leading_thumbnail_is_found_in_one_place(chain, expected):
    lead = ops.lead_thumbnail(parse_chain(chain))
    found = None if lead is None else (lead.width, lead.height, lead.orient, [step.op for step in lead.rest])
    assert found == expected


def test_source_load_does_a_leading_thumbnail_on_load(tmp_path):
    from tilewright.ops import Source

    image = gradient(640, 480).copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", 6)
    image.jpegsave(str(tmp_path / "in.jpg"))
    with Source(tmp_path / "in.jpg") as source:
        thumb, rest = source.load(parse_chain(["auto_orient", "thumbnail=200", "flip"]))
        assert (thumb.width, thumb.height) == source.thumbnail_size(200, 200, orient=True) == (150, 200)
        assert [step.op for step in rest] == ["flip"]
        chain = parse_chain(["resize=0.5"])
        full, rest = source.load(chain)
        assert (full.width, full.height) == (640, 480) and rest == chain


def test_source_header_is_opened_once(testdata, monkeypatch):
    """The header is the one the reader opened: asking for it opens the file no second time."""
    from tilewright.ops import Source

    opened = []
    new_from_file = pyvips.Image.new_from_file
    monkeypatch.setattr(pyvips.Image, "new_from_file", lambda *a, **k: opened.append(a) or new_from_file(*a, **k))
    with Source(testdata("jpeg-png/boxes.png")) as source:
        before = len(opened)  # the reader's own opening
        assert source.header() is source.header()
        assert source.oriented_size(True) == (source.width, source.height)
        assert len(opened) == before
    with Source(testdata("svs/cmu-1-small-region.svs")) as slide:
        assert slide.header() is None


def test_jpeg_chroma_subsampling():
    """`auto` is libvips' rule (4:4:4 from quality 90 up); `420`/`444` force it; other formats refuse it."""
    image = gradient(320, 240)

    def subsampling(*chain) -> str:
        data = encode(run(image, *chain)[0]).data
        return pyvips.Image.new_from_buffer(data, "").get("jpeg-chroma-subsample")

    assert subsampling("quality=85") == "4:2:0"
    assert subsampling("quality=90") == "4:4:4"
    assert subsampling({"op": "format", "format": "jpeg", "quality": 90, "chroma": "420"}, "blur=1") == "4:2:0"
    assert subsampling("format=format:jpeg,chroma:444", "quality=50") == "4:4:4"
    with pytest.raises(OperationError, match="chroma: chroma subsampling is a JPEG setting"):
        run(image, {"op": "format", "format": "png", "chroma": "420"})
    with pytest.raises(OperationError, match="chroma"):
        parse_chain([{"op": "format", "format": "jpeg", "chroma": "411"}])


def test_eight_bit_flattens_16_bit_alpha_on_the_background():
    """A transparent 16-bit pixel becomes the background (alpha is read on the 8-bit scale, after scaling)."""
    pixels = np.zeros((2, 2, 4), np.uint16)
    pixels[..., :3], pixels[0, 0, 3] = 40000, 65535
    image = pyvips.Image.new_from_array(pixels).copy(interpretation="rgb16")
    flat = np.asarray(to_eight_bit(image, (255, 255, 255)))
    assert flat[0, 0].tolist() == [156, 156, 156] and flat[1, 1].tolist() == [255, 255, 255]
    kept = to_eight_bit(image)
    assert (kept.bands, kept.format, kept.interpretation) == (4, "uchar", "srgb")
