"""Pass-through to pyramidal TIFF (outputs/passthrough.py): stored JPEG tiles copied byte for byte, the
other levels rendered; the output opened by OpenSlide, tifffile and libvips; the plain path where it must be.

Copied tiles are compared with the source's raw tile bytes (tifffile's `dataoffsets`/`databytecounts`, read
from the files); rendered levels are compared, decoded, with OpenSlide's reading of the source, box-averaged
to the level's size: a mean absolute difference under 8 grey levels (one JPEG generation at quality 85 of
detailed tissue measures 1.1 to 6.3 on the SVS, the same as libvips' own pyramid levels) and no pixel shift.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import openslide
import pytest
import pyvips
import tifffile

from tilewright.config import Settings
from tilewright.convert import convert, make_options
from tilewright.errors import CancelledError
from tilewright.staging import STAGING_PREFIX

TILEWRIGHT = str(Path(sys.executable).with_name("tilewright"))
TOLERANCE = 8.0  # mean absolute difference of a rendered level from the box-averaged source (see above)


def raw_tiles(path: Path, page: int) -> tuple[list[bytes], bytes | None, int]:
    """A page's tiles as the file stores them, its JPEGTables and Photometric tag."""
    with tifffile.TiffFile(path) as tif:
        found = tif.pages[page]
        handle = tif.filehandle
        tiles = []
        for offset, count in zip(found.dataoffsets, found.databytecounts, strict=True):
            handle.seek(offset)
            tiles.append(handle.read(count))
        return tiles, found.jpegtables, int(found.photometric)


def pages_of_size(path: Path) -> dict[tuple[int, int], int]:
    with tifffile.TiffFile(path) as tif:
        return {(p.imagewidth, p.imagelength): p.index for p in tif.pages}


def rgb(slide: openslide.OpenSlide, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(slide.read_region(location, level, size).convert("RGB")).astype(np.float32)


def box(pixels: np.ndarray, factor: int) -> np.ndarray:
    h, w = pixels.shape[0] // factor * factor, pixels.shape[1] // factor * factor
    return pixels[:h, :w].reshape(h // factor, factor, w // factor, factor, 3).mean(axis=(1, 3))


def check_rendered(source: Path, output: Path, out_level: int, factor: int, src_level: int = 0) -> None:
    """Output level `out_level` (`factor` times smaller than source level `src_level`) against OpenSlide's
    reading of the source at two places: within TOLERANCE, and better aligned than shifted by 2 pixels."""
    src, out = openslide.OpenSlide(str(source)), openslide.OpenSlide(str(output))
    width, height = out.level_dimensions[out_level]
    scale = round(src.level_downsamples[src_level])
    for fx, fy in [(0.1, 0.2), (0.5, 0.6)]:
        x, y = int(width * fx), int(height * fy)
        size = (min(96, width - x), min(96, height - y))
        location = (x * factor * scale, y * factor * scale)  # level-0 coordinates of the same place in both
        # OpenSlide divides by the level's exact downsample (2220 / 1110 but 2967 / 1483): from that, not from 2
        exact = out.level_downsamples[out_level]
        ours = rgb(out, (round(x * exact), round(y * exact)), out_level, size)
        theirs = box(rgb(src, location, src_level, (size[0] * factor, size[1] * factor)), factor)
        assert np.abs(ours - theirs).mean() < TOLERANCE
        shifted = np.abs(ours[:, 2:] - theirs[:, :-2]).mean()
        assert np.abs(ours[:, 2:] - theirs[:, 2:]).mean() <= shifted


@pytest.fixture(scope="session")
def svs_tiff(testdata, tmp_path_factory):
    source = testdata("svs/cmu-1-small-region.svs")
    result = convert(source, tmp_path_factory.mktemp("svs") / "slide", "tiff")
    return source, Path(result.output), result


@pytest.fixture(scope="session")
def four_x_pyramid(tmp_path_factory) -> Path:
    """A scanner-like pyramid, written by tifffile: 4096 x 2048 in 128-pixel tiles with levels at 4x and 16x,
    its JPEG tiles each carrying their own tables (no JPEGTables), made from a smooth generated image."""
    path = tmp_path_factory.mktemp("four-x") / "four-x.tiff"
    x = pyvips.Image.xyz(4096, 2048)
    r = (x[0] / 12).cast("uchar")
    g = (x[1] / 8).cast("uchar")
    b = ((x[0] + x[1]) / 20).cast("uchar")
    base = r.bandjoin([g, b]).numpy()
    with tifffile.TiffWriter(path) as tif:
        for number, step in enumerate((1, 4, 16)):
            level = base[::step, ::step] if step == 1 else box(base.astype(np.float32), step).astype(np.uint8)
            tif.write(
                level,
                tile=(128, 128),
                compression="jpeg",
                compressionargs={"level": 90},
                photometric="rgb",
                subfiletype=1 if number else 0,
                metadata=None,
            )
    return path


def test_svs_level_0_is_copied_bit_exact_and_the_rest_rendered(svs_tiff):
    source, output, result = svs_tiff
    paths = result.passthrough
    assert paths["applies"] and paths["tile_size"] == [240, 240]
    assert [level["path"] for level in paths["levels"]] == ["copy", "render", "render", "render", "render"]
    assert result.tiles_copied == 130 and result.tiles_rendered == 35 + 12 + 4 + 1
    # every tile of level 0, padded edge tiles included (the TIFF's image size crops them), as stored
    ours, our_tables, our_photometric = raw_tiles(output, 0)
    theirs, their_tables, their_photometric = raw_tiles(source, 0)
    assert ours == theirs and our_tables == their_tables
    assert our_photometric == their_photometric == 2  # Aperio's RGB-coded JPEG stays RGB: no false colours


def test_svs_output_opens_in_openslide_tifffile_and_libvips(svs_tiff):
    source, output, _ = svs_tiff
    sizes = ((2220, 2967), (1110, 1483), (555, 741), (277, 370), (138, 185))
    slide = openslide.OpenSlide(str(output))
    assert slide.properties["openslide.vendor"] == "generic-tiff"
    assert slide.level_dimensions == sizes
    assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.499, rel=1e-3)
    assert float(slide.properties["openslide.mpp-y"]) == pytest.approx(0.499, rel=1e-3)
    with tifffile.TiffFile(output) as tif:
        assert [(level.shape[1], level.shape[0]) for level in tif.series[0].levels] == list(sizes)
        assert all(page.compression == tifffile.COMPRESSION.JPEG for page in tif.pages)
    for page, (width, height) in enumerate(sizes):
        image = pyvips.Image.new_from_file(str(output), page=page)
        assert (image.width, image.height) == (width, height)
        assert image.xres == pytest.approx(1000 / 0.499 * width / 2220, rel=2e-3)  # pixels per mm at that level
    # level 0 decodes exactly as the source does: the same bytes, the same tags
    source_slide = openslide.OpenSlide(str(source))
    for location in [(0, 0), (600, 900), (2100, 2900)]:
        assert np.array_equal(rgb(slide, location, 0, (120, 67)), rgb(source_slide, location, 0, (120, 67)))
    for level in (1, 2, 3):
        check_rendered(source, output, level, 2**level)


def test_every_level_of_a_libvips_pyramid_is_copied(big_pyramid, tmp_path):
    result = convert(big_pyramid, tmp_path / "copy", "tiff")
    output = Path(result.output)
    assert result.tiles_rendered == 0 and result.tiles_copied == result.tiles
    assert all(level["path"] == "copy" for level in result.passthrough["levels"])
    source_pages, our_pages = pages_of_size(big_pyramid), pages_of_size(output)
    assert list(our_pages) == list(source_pages)
    for size, page in our_pages.items():
        assert raw_tiles(output, page) == raw_tiles(big_pyramid, source_pages[size])  # YCbCr tiles and tables
    ours, theirs = openslide.OpenSlide(str(output)), openslide.OpenSlide(str(big_pyramid))
    assert ours.level_dimensions == theirs.level_dimensions
    for level, location in [(0, (4000, 3000)), (2, (1024, 2048)), (4, (0, 0))]:
        assert np.array_equal(rgb(ours, location, level, (100, 100)), rgb(theirs, location, level, (100, 100)))
    assert pyvips.Image.new_from_file(str(output)).get("n-pages") == len(source_pages)


def test_a_4x_pyramid_keeps_its_step_below_the_source_levels(four_x_pyramid, tmp_path):
    result = convert(four_x_pyramid, tmp_path / "four-x", "tiff")
    levels = [
        (level["width"], level["height"], level["path"], level["source"]) for level in result.passthrough["levels"]
    ]
    assert result.passthrough["factor"] == 4
    assert levels == [(4096, 2048, "copy", 0), (1024, 512, "copy", 1), (256, 128, "copy", 2), (64, 32, "render", 2)]
    output = Path(result.output)
    for page in range(3):  # tiles that carry their own tables: no JPEGTables on either side
        assert raw_tiles(output, page) == raw_tiles(four_x_pyramid, page)
        assert raw_tiles(output, page)[1] is None
    with tifffile.TiffFile(output) as tif:  # one pyramid of one step, as tifffile reads pyramids
        assert [(level.shape[1], level.shape[0]) for level in tif.series[0].levels] == [lvl[:2] for lvl in levels]
    assert openslide.OpenSlide(str(output)).level_dimensions == tuple(lvl[:2] for lvl in levels)
    check_rendered(four_x_pyramid, output, 3, 4, src_level=2)


@pytest.mark.parametrize(
    ("source", "options", "reason"),
    [
        ("svs/tcga-cr-7395-01a-01-ts1.svs", {}, "level 0 is not stored as JPEG tiles: APERIO_JP2000_RGB-compressed"),
        ("generic-tiff/yb10kx5k.zstd.tiff", {}, "ZSTD-compressed, not JPEG"),
        ("svs/cmu-1-small-region.svs", {"tile_size": 256}, "tile size 256 was asked for; the source stores 240 x 240"),
        ("svs/cmu-1-small-region.svs", {"tile_format": "webp"}, "webp tiles were asked for"),
        ("svs/cmu-1-small-region.svs", {"passthrough": False}, "--no-passthrough"),
        ("jpeg-png/boxes.png", {}, "the source is not a TIFF"),
    ],
)
def test_where_pass_through_does_not_apply_the_plain_path_is_taken_and_said(
    testdata, tmp_path, source, options, reason
):
    result = convert(
        testdata(source), tmp_path / "out", "tiff", options=make_options("tiff", Settings(), **options), dry_run=True
    )
    assert not result.passthrough["applies"] and reason in result.passthrough["reason"]
    assert result.tiles_copied == 0 and result.tiles_rendered == result.tiles
    assert all(level["path"] == "render" for level in result.passthrough["levels"])


def test_the_plain_path_still_writes_the_svs_when_asked(testdata, tmp_path):
    options = make_options("tiff", Settings(), tile_size=256)
    result = convert(testdata("svs/cmu-1-small-region.svs"), tmp_path / "plain", "tiff", options=options)
    assert result.tiles_copied == 0
    with tifffile.TiffFile(result.output) as tif:
        assert tif.pages[0].tilewidth == 256 and tif.pages[0].photometric == tifffile.PHOTOMETRIC.YCBCR


def test_cancel_while_copying_publishes_nothing(big_pyramid, tmp_path):
    seen: list[tuple[float, str]] = []
    with pytest.raises(CancelledError):
        convert(
            big_pyramid,
            tmp_path / "big",
            "tiff",
            progress=lambda fraction, stage: seen.append((fraction, stage)),
            cancelled=lambda: any(stage == "write" and fraction > 0.05 for fraction, stage in seen),
        )
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(STAGING_PREFIX)] == []
    assert list(tmp_path.iterdir()) == []


def test_cli_dry_run_info_and_json_say_each_levels_path(testdata, tmp_path):
    svs = testdata("svs/cmu-1-small-region.svs")
    env = {**os.environ, "TILEWRIGHT_DATA_DIR": str(tmp_path / "data")}

    def run(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TILEWRIGHT, *map(str, args)], capture_output=True, text=True, timeout=120, env=env)

    dry = run("convert", svs, "-o", tmp_path / "s", "--to", "tiff", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "182 tiles (130 copied, 52 rendered)" in dry.stdout
    assert "level 0: 2220 x 2967, copy (130 tiles): stored JPEG tiles, copied as they are" in dry.stdout
    assert "level 1: 1110 x 1483, render from source level 0 (35 tiles): below the smallest source level" in dry.stdout
    plain = run("convert", svs, "-o", tmp_path / "s", "--to", "tiff", "--dry-run", "--no-passthrough")
    assert "plain path: --no-passthrough: every level is rendered" in plain.stdout
    info = json.loads(run("info", svs, "--no-properties").stdout)
    assert info["passthrough"]["tiff"]["levels"][0]["path"] == "copy"
    done = run("convert", svs, "-o", tmp_path / "s", "--to", "tiff", "--json")
    summary = json.loads(done.stdout)
    assert (summary["tiles_copied"], summary["tiles_rendered"]) == (130, 52)
    assert Path(summary["output"]).is_file()
