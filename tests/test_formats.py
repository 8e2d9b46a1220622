"""formats/: one reader interface for every format, picked by content.

Each reader is checked against what the format's own reference library reports
(OpenSlide for slides, wsidicom for DICOM, tifffile for OME-TIFF and TIFF).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import openslide
import pytest

from tilewright.config import Settings
from tilewright.errors import InputError, LimitExceededError, UnsupportedFormatError
from tilewright.formats import accepted_suffixes, detect, open_slide, registry
from tilewright.formats.bridge import BridgedLevel
from tilewright.formats.jpegtiles import ADOBE_RGB


def pixels(image) -> np.ndarray:
    return np.ndarray(buffer=image.write_to_memory(), dtype=np.uint8, shape=(image.height, image.width, image.bands))


def openslide_rgb(slide: openslide.OpenSlide, location, level, size) -> np.ndarray:
    rgba = np.asarray(slide.read_region(location, level, size)).astype(np.float32)
    alpha = rgba[..., 3:4] / 255.0
    return rgba[..., :3] * alpha + 255.0 * (1 - alpha)


@pytest.mark.parametrize(
    ("relative", "reader", "fmt"),
    [
        ("svs/cmu-1-small-region.svs", "openslide", "aperio"),
        ("svs/tcga-cr-7395-01a-01-ts1.svs", "openslide", "aperio"),
        ("ndpi/test3-DAPI-2-(387).ndpi", "openslide", "hamamatsu"),
        ("dicom/jpeg.dicom", "dicom", "dicom"),
        ("ome-tiff/rand_uint16.ome.tiff", "ometiff", "ome-tiff"),
        ("generic-tiff/yb10kx5k.zstd.tiff", "ometiff", "tiff"),  # ZSTD: libvips' wheel decodes it as black
        ("generic-tiff/small_HE_levels.tiff", "vips", "tiff"),
        ("jpeg-png/boxes.png", "vips", "png"),
        ("jpeg-png/2569067123_aca715a2ee_o.jpg", "vips", "jpeg"),
    ],
)
def test_each_format_is_detected_by_its_reader(testdata, relative, reader, fmt):
    with open_slide(testdata(relative)) as slide:
        assert (slide.name, slide.format) == (reader, fmt)
        info = slide.info()
        assert info.width == slide.levels[0].width > 0
        assert info.levels[0].downsample == 1.0


def test_detection_is_by_content_not_extension(testdata, tmp_path):
    png_named_svs = tmp_path / "photo.svs"
    shutil.copy(testdata("jpeg-png/boxes.png"), png_named_svs)
    assert detect(png_named_svs).name == "vips"
    text_named_png = tmp_path / "notes.png"
    shutil.copy(testdata("broken/broken.svs"), text_named_png)  # a text file, whatever its name says
    with pytest.raises(UnsupportedFormatError, match="not an image"):
        detect(text_named_png)


@pytest.mark.parametrize(
    ("relative", "reader"),
    [
        ("ome-tiff/rand_uint16.ome.tiff", "ometiff"),  # the OME-TIFF checker's parse is the reader's
        ("generic-tiff/small_HE_levels.tiff", "vips"),  # ... or the vips reader's, after the OME-TIFF checker said no
    ],
)
def test_a_tiff_is_parsed_by_tifffile_once_per_open(testdata, monkeypatch, relative, reader):
    import tifffile

    parsed = []
    init = tifffile.TiffFile.__init__

    def counting(self, *args, **kwargs):
        init(self, *args, **kwargs)
        parsed.append(self)

    monkeypatch.setattr(tifffile.TiffFile, "__init__", counting)
    path = testdata(relative)
    with open_slide(path) as slide:
        assert slide.name == reader and len(parsed) == 1
        assert parsed[0].filehandle.closed == (reader == "vips")  # only the OME-TIFF reader keeps it open
        levels = slide.levels
    assert parsed[0].filehandle.closed
    alone = type(slide)(path)  # a reader made without the registry parses the file itself
    assert alone.levels == levels and len(parsed) == 2
    alone.close()


def test_empty_and_missing_files_are_input_errors(tmp_path):
    empty = tmp_path / "empty.svs"
    empty.touch()
    with pytest.raises(InputError, match="empty"):
        open_slide(empty)
    with pytest.raises(InputError, match="no such file"):
        open_slide(tmp_path / "absent.svs")


def test_slide_metadata_equals_what_openslide_reports(testdata):
    path = testdata("ndpi/test3-DAPI-2-(387).ndpi")
    reference = openslide.OpenSlide(str(path))
    with open_slide(path) as slide:
        info = slide.info()
    assert [(lv.width, lv.height) for lv in info.levels] == list(reference.level_dimensions)
    assert [lv.downsample for lv in info.levels] == pytest.approx(list(reference.level_downsamples))
    assert info.mpp_x == pytest.approx(float(reference.properties["openslide.mpp-x"]))
    assert info.objective_power == pytest.approx(float(reference.properties["openslide.objective-power"]))
    assert set(info.associated_images) == set(reference.associated_images)
    assert info.vendor == "hamamatsu"


def test_aperio_metadata_and_associated_images(testdata):
    with open_slide(testdata("svs/cmu-1-small-region.svs")) as slide:
        info = slide.info()
        label = slide.associated("label")
    assert (info.mpp_x, info.mpp_y, info.objective_power) == (0.499, 0.499, 20.0)
    assert info.associated_images == {"label": (387, 463), "macro": (1280, 431), "thumbnail": (574, 768)}
    assert (label.width, label.height, label.bands) == (387, 463, 3)


@pytest.mark.parametrize(
    ("relative", "level", "location", "size"),
    [
        ("ndpi/test3-DAPI-2-(387).ndpi", 0, (1000, 1500), (300, 200)),  # bridged, full resolution
        ("ndpi/test3-DAPI-2-(387).ndpi", 2, (2048, 2048), (150, 120)),  # bridged, a reduced level
        ("svs/tcga-cr-7395-01a-01-ts1.svs", 1, (1000, 800), (256, 256)),  # JPEG 2000: OpenSlide only
        ("svs/cmu-1-small-region.svs", 0, (500, 700), (400, 300)),  # native tiffload page
    ],
)
def test_regions_match_openslide_pixels(testdata, relative, level, location, size):
    path = testdata(relative)
    reference = openslide_rgb(openslide.OpenSlide(str(path)), location, level, size)
    with open_slide(path) as slide:
        ours = pixels(slide.region(*location, *size, level=level)).astype(np.float32)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).mean() < 1.0


def test_dicom_pixels_match_wsidicom(testdata):
    from wsidicom import WsiDicom

    path = testdata("dicom/jpeg2000.dicom")
    with WsiDicom.open([path]) as wsi:
        reference = np.asarray(wsi.read_region((300, 200), 0, (256, 256)).convert("RGB")).astype(np.float32)
    with open_slide(path) as slide:
        assert (slide.width, slide.height) == (957, 715)
        ours = pixels(slide.region(300, 200, 256, 256)).astype(np.float32)
    assert np.abs(ours - reference).mean() < 0.5


def test_ome_tiff_pyramid_levels_and_16_bit_scaling(testdata):
    with open_slide(testdata("ome-tiff/rand_uint16.ome.tiff")) as slide:
        assert [(lv.width, lv.height) for lv in slide.levels] == [(128, 512), (64, 256), (32, 128)]
        assert slide.mpp == pytest.approx((0.29, 0.29))
        image = slide.level_image(1)
        assert (image.format, image.bands) == ("uchar", 3)
        assert 100 < image.avg() < 160  # uniform random data spread over 0..255


def test_generic_tiff_pyramid_comes_from_its_pages(testdata):
    with open_slide(testdata("generic-tiff/small_HE_levels.tiff")) as slide:
        assert [(lv.width, lv.height) for lv in slide.levels] == [(300, 250), (150, 125), (75, 62), (37, 31)]
        assert slide.tiled and slide.tile_size == (64, 64)
        low = slide.level_image(2)
        assert (low.width, low.height) == (75, 62)


def test_zstd_tiff_pixels_match_openslide(testdata):
    """The libvips wheel decodes ZSTD tiles as zeros; tilewright reads them through tifffile instead."""
    path = testdata("generic-tiff/yb10kx5k.zstd.tiff")
    reference = openslide_rgb(openslide.OpenSlide(str(path)), (4000, 2000), 1, (300, 200))
    with open_slide(path) as slide:
        assert [(lv.width, lv.height) for lv in slide.levels][:3] == [(10000, 5000), (5000, 2500), (2500, 1250)]
        ours = pixels(slide.region(4000, 2000, 300, 200, level=1)).astype(np.float32)
    assert reference.mean() > 50 and np.abs(ours - reference).mean() < 1.0


def test_thumbnail_reads_the_smallest_sufficient_level(testdata):
    with open_slide(testdata("ndpi/test3-DAPI-2-(387).ndpi")) as slide:
        assert slide.best_level_for_downsample(4864 / 200) == 4  # level 4 is 248 x 304, the smallest >= 200
        thumb = slide.thumbnail(200)
        assert max(thumb.width, thumb.height) == 200
        assert slide._bridges[-1].image.width == 248  # the level the thumbnail was read from


def test_pixel_limits_refuse_before_decoding(testdata):
    small = Settings(max_image_pixels=10_000)
    with pytest.raises(LimitExceededError, match="TILEWRIGHT_MAX_IMAGE_PIXELS"):
        open_slide(testdata("jpeg-png/boxes.png"), small)
    tiny_slides = Settings(max_slide_pixels=1_000_000)
    with pytest.raises(LimitExceededError, match="TILEWRIGHT_MAX_SLIDE_PIXELS"):
        open_slide(testdata("svs/cmu-1-small-region.svs"), tiny_slides)


def test_checker_order_is_configurable(testdata):
    only_vips = Settings(format_checkers=["vips"])
    assert detect(testdata("jpeg-png/boxes.png"), only_vips).name == "vips"
    with pytest.raises(ValueError, match="unknown format checker"):
        detect(testdata("jpeg-png/boxes.png"), Settings(format_checkers=["nope"]))


def test_every_built_in_reader_is_tried_by_default_and_one_left_out_of_the_setting_is_off(testdata, monkeypatch):
    """The default tries every reader of the registry, a new one too; a list names the ones tried."""
    assert Settings().format_checkers == []
    assert detect(testdata("jpeg-png/boxes.png"), Settings()).name == "vips"
    # a reader registered in `_BUILTIN` (here the vips reader under a second name, first) needs no setting
    monkeypatch.setattr(registry, "_BUILTIN", {"second": registry._BUILTIN["vips"], **registry._BUILTIN})
    assert [name for name, _ in registry._ordered_names(Settings())][:2] == ["second", "dicom"]
    with pytest.raises(UnsupportedFormatError):  # left out of an explicit list: off (e.g. no OpenSlide)
        detect(testdata("jpeg-png/boxes.png"), Settings(format_checkers=["ometiff"]))


def test_uploads_and_imports_accept_the_suffixes_the_readers_declare():
    assert {".svs", ".ndpi", ".mrxs", ".dcm", ".jpg", ".png", ".qptiff"} <= accepted_suffixes()
    assert ".txt" not in accepted_suffixes()


def test_third_party_reader_plugs_in_through_entry_points(tmp_path, monkeypatch):
    """A plug-in is a SlideReader subclass registered in the `tilewright.formats` entry-point group."""
    (tmp_path / "tw_fake_plugin.py").write_text(
        textwrap.dedent("""
        import pyvips
        from tilewright.formats.base import Level, SlideReader

        class FakeReader(SlideReader):
            name = "fake"

            @classmethod
            def check(cls, path, head):
                return head.startswith(b"TWFAKE")

            def __init__(self, path, settings=None):
                super().__init__(path, settings)
                self.format = "fake"
                self.levels = [Level(64, 32, 1.0)]

            def _level_image(self, level, sequential):
                return pyvips.Image.black(64, 32, bands=3) + 128
    """)
    )
    dist = tmp_path / "tw_fake_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tw-fake-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[tilewright.formats]\nfake = tw_fake_plugin:FakeReader\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sample = tmp_path / "sample.bin"
    sample.write_bytes(b"TWFAKE" + b"\0" * 100)
    with open_slide(sample) as slide:
        assert slide.name == "fake"
        assert slide.level_image(0).avg() == 128
    sys.modules.pop("tw_fake_plugin", None)


def test_bridge_streams_tile_by_tile_and_keeps_read_errors():
    calls = []

    def read_tile(x, y, w, h):
        calls.append((x, y))
        if (x, y) == (512, 512):
            raise OSError("sector unreadable")
        return np.full((h, w, 3), 200, np.uint8)

    bridge = BridgedLevel(2000, 1500, 3, read_tile, tile=512)
    image = bridge.image
    assert (image.width, image.height, image.bands) == (2000, 1500, 3)
    assert image.crop(0, 0, 100, 100).avg() == 200
    assert len(calls) == 1  # only the tile that was asked for was read
    assert bridge.error is None
    image.crop(500, 500, 100, 100).avg()  # libvips carries on past a failed read...
    assert isinstance(bridge.error, OSError)  # ...so the bridge keeps it for the caller (see test_convert)


# -- stored JPEG tiles (formats/jpegtiles.py) ---------------------------------------------------------
def _stored_bytes(path, page_index: int, tile_index: int) -> bytes:
    """A tile as tifffile reads it raw, with the page's JPEG tables spliced in (what a JPEG decoder needs)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[page_index]
        tif.filehandle.seek(page.dataoffsets[tile_index])
        raw = tif.filehandle.read(page.databytecounts[tile_index])
        return page.jpegtables[:-2] + raw[2:]


@pytest.mark.parametrize(
    "source, tile, coding",
    [
        ("generated Q90", 256, "rgb"),  # libvips writes RGB-coded JPEG (Photometric RGB) from Q 90 up
        ("generated Q80", 256, "ycbcr"),  # ... and YCbCr below
        ("svs/cmu-1-small-region.svs", 240, "rgb"),  # Aperio: RGB-coded, Photometric RGB, no Adobe marker
    ],
)
def test_stored_jpeg_tiles_are_handed_out_as_stored(testdata, big_pyramid, tmp_path, source, tile, coding):
    """Interior tiles come back as stored (plus the Adobe marker RGB-coded data needs), decode to the pixels
    libvips reads through libtiff; edge tiles do not come back (they are padded in the file)."""
    import pyvips

    if source == "generated Q80":
        path = tmp_path / "ycbcr.tiff"
        pyvips.Image.new_from_file(str(big_pyramid)).tiffsave(
            str(path), tile=True, pyramid=True, compression="jpeg", Q=80, tile_width=256, tile_height=256
        )
    else:
        path = big_pyramid if source.startswith("generated") else testdata(source)
    reader = open_slide(path, Settings())
    assert reader.jpeg_tiles is not None and reader.jpeg_tiles.tile_size(0) == (tile, tile)
    data = reader.stored_jpeg_tile(0, 2, 1)
    stored = _stored_bytes(path, 0, 1 * -(-reader.levels[0].width // tile) + 2)
    assert data == (b"\xff\xd8" + ADOBE_RGB + stored[2:] if coding == "rgb" else stored)
    decoded = pyvips.Image.jpegload_buffer(data).numpy().astype(np.int16)
    expected = reader.level_image(0).crop(2 * tile, tile, tile, tile).numpy().astype(np.int16)
    assert np.abs(decoded - expected).mean() < 1.0
    last_col = reader.levels[0].width // tile  # partial: padded in the file, so it must be rendered
    assert reader.levels[0].width % tile and reader.stored_jpeg_tile(0, last_col, 0) is None
    assert reader.stored_jpeg_tile(0, -1, 0) is None and reader.stored_jpeg_tile(len(reader.levels), 0, 0) is None
    reader.close()


def test_stored_jpeg_tiles_that_decode_differently_are_never_handed_out(big_pyramid):
    """The first use of a level compares one decoded tile with libtiff's reading; a mismatch turns it off."""
    reader = open_slide(big_pyramid, Settings())
    inverted = lambda level: reader.level_image(level).invert()  # noqa: E731 - stands for a wrong colour space
    assert reader.jpeg_tiles.tile(0, 1, 1, inverted) is None
    assert reader.jpeg_tiles.tile(0, 2, 2, reader.level_image) is None  # the verdict sticks for the level
    assert reader.jpeg_tiles.tile(1, 1, 1, reader.level_image) is not None  # other levels are checked on their own
    reader.close()


def test_a_jpeg_never_loads_the_slide_libraries(testdata):
    """Detection asks a built-in checker only when the first bytes allow it: opening a JPEG imports neither
    OpenSlide nor wsidicom nor tifffile (nor numpy): a seventh of a second saved on every small image."""
    code = textwrap.dedent(f"""
        import sys
        from tilewright.formats import open_slide
        reader = open_slide({str(testdata("jpeg-png/giant-image.jpg"))!r})
        assert reader.name == "vips", reader.name
        print(",".join(m for m in ("openslide", "wsidicom", "tifffile", "numpy") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
