"""outputs/: Deep Zoom, pyramidal TIFF and IIIF pyramids that their usual readers accept.

DZI tiles are compared with OpenSlide's own DeepZoomGenerator (the reference for
the Deep Zoom layout, overlap included); TIFFs are opened with OpenSlide and tifffile.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import openslide
import pytest
import pyvips
import tifffile
from openslide.deepzoom import DeepZoomGenerator

from tilewright.config import Settings
from tilewright.convert import convert, make_options
from tilewright.errors import InputError
from tilewright.outputs.iiif import MAX_SIDE

DZ = "{http://schemas.microsoft.com/deepzoom/2008}"


def read_dzi(path: Path) -> dict:
    root = ET.parse(path).getroot()
    size = root.find(f"{DZ}Size")
    return {
        "tile": int(root.get("TileSize")),
        "overlap": int(root.get("Overlap")),
        "format": root.get("Format"),
        "width": int(size.get("Width")),
        "height": int(size.get("Height")),
    }


def load(path: Path) -> np.ndarray:
    image = pyvips.Image.new_from_file(str(path))
    return np.ndarray(
        buffer=image.write_to_memory(), dtype=np.uint8, shape=(image.height, image.width, image.bands)
    ).astype(np.float32)


@pytest.fixture(scope="module")
def ndpi_dzi(tmp_path_factory):
    from tests.conftest import testdata_path

    source = testdata_path("ndpi/test3-DAPI-2-(387).ndpi")
    out = tmp_path_factory.mktemp("dzi") / "slide"
    result = convert(source, out, "dzi")
    return source, out, result


def test_dzi_xml_and_tile_counts_follow_the_deep_zoom_spec(ndpi_dzi):
    _source, out, result = ndpi_dzi
    meta = read_dzi(out.with_name("slide.dzi"))
    assert meta == {"tile": 254, "overlap": 1, "format": "jpeg", "width": 3968, "height": 4864}
    max_level = math.ceil(math.log2(max(3968, 4864)))
    levels = sorted(int(p.name) for p in out.with_name("slide_files").iterdir() if p.is_dir())
    assert levels == list(range(max_level + 1))
    total = 0
    for level in levels:
        scale = 2 ** (max_level - level)
        w, h = math.ceil(3968 / scale), math.ceil(4864 / scale)
        expected = math.ceil(w / 254) * math.ceil(h / 254)
        tiles = list(out.with_name("slide_files").joinpath(str(level)).glob("*.jpeg"))
        assert len(tiles) == expected, f"level {level}"
        total += expected
    assert result.tiles == total and result.levels == max_level + 1


@pytest.mark.parametrize(("level_from_top", "col", "row"), [(0, 0, 0), (0, 3, 5), (0, 15, 19), (1, 2, 4), (3, 0, 1)])
def test_dzi_tiles_match_openslide_deepzoom_tiles(ndpi_dzi, level_from_top, col, row):
    source, out, _ = ndpi_dzi
    generator = DeepZoomGenerator(openslide.OpenSlide(str(source)), tile_size=254, overlap=1, limit_bounds=False)
    level = generator.level_count - 1 - level_from_top
    reference = np.asarray(generator.get_tile(level, (col, row)).convert("RGB")).astype(np.float32)
    ours = load(out.with_name("slide_files") / str(level) / f"{col}_{row}.jpeg")
    assert ours.shape == reference.shape  # same size means overlap is handled the same way at every edge
    # full resolution: the same pixels up to JPEG noise; reduced levels: OpenSlide reads the scanner's own
    # reduced level, we average the base, so allow more, but require the alignment to be exact
    assert np.abs(ours - reference).mean() < (3.0 if level_from_top == 0 else 8.0)
    aligned = np.abs(ours[4:-4, 4:-4] - reference[4:-4, 4:-4]).mean()
    for dx, dy in [(3, 0), (-3, 0), (0, 3), (0, -3)]:
        shifted = np.abs(
            ours[4 + dy : ours.shape[0] - 4 + dy, 4 + dx : ours.shape[1] - 4 + dx] - reference[4:-4, 4:-4]
        ).mean()
        assert aligned <= shifted


def test_tiff_opens_in_openslide_and_tifffile_with_halving_levels(testdata, tmp_path):
    # the plain path (libvips' tiffsave); the default copies the SVS's 240-pixel tiles (test_passthrough.py)
    source = testdata("svs/cmu-1-small-region.svs")
    result = convert(source, tmp_path / "slide", "tiff", options=make_options("tiff", Settings(), passthrough=False))
    path = Path(result.output)
    assert path.name == "slide.tiff"
    slide = openslide.OpenSlide(str(path))
    assert slide.properties["openslide.vendor"] == "generic-tiff"
    assert slide.level_dimensions == ((2220, 2967), (1110, 1483), (555, 741), (277, 370), (138, 185))
    assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.499, rel=1e-3)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.tilewidth, page.tilelength) == (256, 256)
        assert page.compression == tifffile.COMPRESSION.JPEG
        assert len(tif.series[0].levels) == 5
    reference = np.asarray(openslide.OpenSlide(str(source)).read_region((600, 900), 0, (300, 300)).convert("RGB"))
    ours = np.asarray(slide.read_region((600, 900), 0, (300, 300)).convert("RGB"))
    assert np.abs(ours.astype(np.float32) - reference).mean() < 3.0


def test_tiff_base_only_has_one_level(testdata, tmp_path):
    options = make_options("tiff", Settings(), base_only=True, tile_size=512)
    convert(testdata("jpeg-png/2569067123_aca715a2ee_o.jpg"), tmp_path / "photo", "tiff", options=options)
    with tifffile.TiffFile(tmp_path / "photo.tiff") as tif:
        assert len(tif.pages) == 1 and tif.pages[0].tilewidth == 512


def test_iiif_level0_tiles_and_info_json(testdata, tmp_path):
    # --iiif-id is the image's id itself, not a base URL the folder's name is appended to
    options = make_options("iiif", Settings(), iiif_id="https://images.example.org/iiif/photo")
    result = convert(testdata("jpeg-png/2569067123_aca715a2ee_o.jpg"), tmp_path / "photo", "iiif", options=options)
    folder = Path(result.output)
    info = json.loads((folder / "info.json").read_text())
    assert info["@context"] == "http://iiif.io/api/image/3/context.json"
    assert info["type"] == "ImageService3" and info["profile"] == "level0"
    assert info["id"] == "https://images.example.org/iiif/photo"
    assert (info["width"], info["height"]) == (2725, 2225)
    tile = info["tiles"][0]
    assert tile["width"] == 512 and tile["scaleFactors"][0] == 1
    # the first full-resolution tile and the last column's clipped tile exist as a level-0 client asks
    assert (folder / "0,0,512,512" / "512,512" / "0" / "default.jpg").exists()
    assert (folder / "2560,0,165,512" / "165,512" / "0" / "default.jpg").exists()
    for size in info["sizes"]:  # every whole-image size announced is there
        assert (folder / "full" / f"{size['width']},{size['height']}" / "0" / "default.jpg").exists()


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_tile_formats(testdata, tmp_path, fmt):
    options = make_options("dzi", Settings(), tile_format=fmt)
    convert(testdata("jpeg-png/boxes.png"), tmp_path / "boxes", "dzi", options=options)
    assert read_dzi(tmp_path / "boxes.dzi")["format"] == fmt
    assert (tmp_path / "boxes_files" / "9" / f"0_0.{fmt}").exists()


def iiif_level0_urls(info: dict) -> set[str]:
    """Every URL a level-0 client may ask of this info.json (as OpenSeadragon builds them): `full/max`, each
    listed size and each tile of each scale factor (canonical: `full` for a region that is the whole image)."""
    width, height, base = info["width"], info["height"], info["id"]
    urls = {f"{base}/full/max/0/default.jpg"}
    urls |= {f"{base}/full/{s['width']},{s['height']}/0/default.jpg" for s in info.get("sizes", [])}
    for tiles in info["tiles"]:
        for factor in tiles["scaleFactors"]:
            step = tiles["width"] * factor
            for y in range(0, height, step):
                for x in range(0, width, step):
                    w, h = min(step, width - x), min(step, height - y)
                    region = "full" if (w, h) == (width, height) else f"{x},{y},{w},{h}"
                    urls.add(f"{base}/{region}/{math.ceil(w / factor)},{math.ceil(h / factor)}/0/default.jpg")
    return urls


def written_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() and p.name != "info.json"}


@pytest.mark.parametrize(
    "image, tile_size",
    [("jpeg-png/2569067123_aca715a2ee_o.jpg", 512), ("jpeg-png/boxes.png", 256), ("svs/cmu-1-small-region.svs", 300)],
)
def test_iiif_writes_every_url_its_info_json_implies_and_the_plan_counts_them(testdata, tmp_path, image, tile_size):
    """`full/max` (level 0 requires it) and every listed size and tile are there, at ID/..., and nothing else;
    the dry run's tile count is the number of files written."""
    image_id = "https://images.example.org/iiif/some/slide"
    options = make_options("iiif", Settings(), tile_size=tile_size, iiif_id=image_id)
    planned = convert(testdata(image), tmp_path / "out", "iiif", options=options, dry_run=True)
    result = convert(testdata(image), tmp_path / "out", "iiif", options=options)
    folder = Path(result.output)
    info = json.loads((folder / "info.json").read_text())
    assert info["id"] == image_id
    urls = iiif_level0_urls(info)
    expected = {folder / url.removeprefix(image_id + "/") for url in urls}
    assert written_files(folder) == expected
    assert planned.tiles == result.tiles == len(expected)
    full = pyvips.Image.new_from_file(str(folder / "full" / "max" / "0" / "default.jpg"))
    assert (full.width, full.height) == (info["width"], info["height"])
    assert "maxWidth" not in info and "maxHeight" not in info  # max is the full size for these


def test_iiif_full_max_of_a_big_image_is_bounded_and_info_json_says_so(big_pyramid, tmp_path):
    """A 6000 x 5000 image: `full/max` is the largest level within MAX_SIDE (3000 x 2500), stitched
    from the tiles, and `maxWidth`/`maxHeight` tell a client what `max` is."""
    options = make_options("iiif", Settings(), iiif_id="http://127.0.0.1:9/big")
    result = convert(big_pyramid, tmp_path / "big", "iiif", options=options)
    folder = Path(result.output)
    info = json.loads((folder / "info.json").read_text())
    assert (info["maxWidth"], info["maxHeight"]) == (3000, 2500) and max(3000, 2500) <= MAX_SIDE
    full = load(folder / "full" / "max" / "0" / "default.jpg")
    assert full.shape == (2500, 3000, 3)
    # the stitched image is the level's tiles, in place: its last tile is the level's last tile
    corner = load(folder / "5120,4096,880,904" / "440,452" / "0" / "default.jpg")
    assert np.abs(full[2048:, 2560:].astype(int) - corner.astype(int)).mean() < 8  # a second JPEG encoding
    assert written_files(folder) == {folder / u.removeprefix(info["id"] + "/") for u in iiif_level0_urls(info)}


def test_iiif_png_tiles_still_have_a_jpeg_full_max(testdata, tmp_path):
    options = make_options("iiif", Settings(), tile_format="png", iiif_id="http://127.0.0.1:9/boxes")
    result = convert(testdata("jpeg-png/boxes.png"), tmp_path / "boxes", "iiif", options=options)
    folder = Path(result.output)
    info = json.loads((folder / "info.json").read_text())
    assert info["preferredFormats"] == ["png"]
    assert {p.name for p in (folder / "full" / "max" / "0").iterdir()} == {"default.jpg", "default.png"}
    assert result.tiles == convert(testdata("jpeg-png/boxes.png"), tmp_path / "b2", "iiif", options=options).tiles


def test_iiif_id_default_is_the_servers_outputs_url_else_it_must_be_given(testdata, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", port=8123)
    inside = settings.resolved_output_root() / "coll" / "photo"
    result = convert(testdata("jpeg-png/boxes.png"), inside, "iiif", settings=settings)
    info = json.loads((Path(result.output) / "info.json").read_text())
    assert info["id"] == "http://127.0.0.1:8123/outputs/coll/photo"  # what `tilewright serve` serves there
    behind = Settings(data_dir=tmp_path / "data", public_url="https://example.org/tiles")  # behind a proxy
    again = convert(testdata("jpeg-png/boxes.png"), inside.with_name("again"), "iiif", settings=behind)
    assert (
        json.loads((Path(again.output) / "info.json").read_text())["id"]
        == "https://example.org/tiles/outputs/coll/again"
    )
    with pytest.raises(InputError, match="--iiif-id"):
        convert(testdata("jpeg-png/boxes.png"), tmp_path / "elsewhere", "iiif", settings=settings, dry_run=True)
    assert not (tmp_path / "elsewhere").exists()
    with pytest.raises(InputError, match="http"):
        make_options("iiif", settings, iiif_id="images/photo")
    given = make_options("iiif", settings, iiif_id="https://example.org/iiif/photo/")
    assert given.iiif_id == "https://example.org/iiif/photo"  # the id has no trailing slash
