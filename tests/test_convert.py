"""convert.py and pipeline.py: atomic publishing, overwrite, dry run, cancel, time limit, read errors."""

from __future__ import annotations

import openslide
import pytest

from tilewright.config import Settings
from tilewright.convert import convert, make_options
from tilewright.errors import CancelledError, InputError, OutputExistsError, OutputWriteError
from tilewright.staging import STAGING_PREFIX


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_dry_run_writes_nothing_and_gives_the_plan(testdata, tmp_path):
    result = convert(testdata("svs/cmu-1-small-region.svs"), tmp_path / "out" / "slide", "dzi", dry_run=True)
    assert result.dry_run and result.levels == 13 and result.tiles == 160
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_existing_output_needs_overwrite_and_is_replaced_whole(testdata, tmp_path):
    source = testdata("jpeg-png/boxes.png")
    convert(source, tmp_path / "img", "dzi")
    first = (tmp_path / "img.dzi").stat().st_mtime_ns
    with pytest.raises(OutputExistsError):
        convert(source, tmp_path / "img", "dzi")
    assert (tmp_path / "img.dzi").stat().st_mtime_ns == first
    options = make_options("dzi", Settings(), overwrite=True, tile_size=128)
    convert(source, tmp_path / "img", "dzi", options=options)
    assert 'TileSize="128"' in (tmp_path / "img.dzi").read_text()
    # no tile of the old 254-pixel layout survives in the new pyramid
    assert (
        not (tmp_path / "img_files" / "9" / "1_0.jpeg").exists() or (tmp_path / "img_files" / "9" / "2_0.jpeg").exists()
    )
    assert leftovers(tmp_path) == []


def test_cancel_mid_write_publishes_nothing(big_pyramid, tmp_path):
    seen = []

    def progress(fraction, stage):
        seen.append((fraction, stage))

    with pytest.raises(CancelledError):
        convert(
            big_pyramid,
            tmp_path / "big",
            "dzi",
            progress=progress,
            cancelled=lambda: any(stage == "write" and f > 0.05 for f, stage in seen),
        )
    assert not (tmp_path / "big.dzi").exists() and not (tmp_path / "big_files").exists()
    assert leftovers(tmp_path) == []


def test_time_limit_stops_the_work_and_says_so(big_pyramid, tmp_path):
    # the plain path, whose libvips write takes well over the limit (copying this pyramid's stored tiles may
    # not: the pass-through's own stop is tested in test_passthrough.py)
    options = make_options("tiff", Settings(), passthrough=False)
    with pytest.raises(CancelledError, match="TILEWRIGHT_TIME_LIMIT_SECONDS"):
        convert(big_pyramid, tmp_path / "big", "tiff", options=options, settings=Settings(time_limit_seconds=0.05))
    assert list(tmp_path.iterdir()) == []


def test_progress_reaches_one_through_named_stages(testdata, tmp_path):
    seen = []
    convert(testdata("svs/cmu-1-small-region.svs"), tmp_path / "s", "dzi", progress=lambda f, s: seen.append((f, s)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [s for _, s in seen if s != "write"][:3] == ["open", "plan", "publish"] or "write" in {s for _, s in seen}


def test_a_failed_tile_read_fails_the_conversion(testdata, tmp_path, monkeypatch):
    """Fault injection: OpenSlide fails on one region, as it does on a damaged file; nothing is published."""
    real = openslide.OpenSlide.read_region

    def flaky(self, location, level, size):
        if location[0] >= 2000:
            raise openslide.OpenSlideError("Corrupt JPEG data in tile")
        return real(self, location, level, size)

    monkeypatch.setattr(openslide.OpenSlide, "read_region", flaky)
    with pytest.raises(InputError, match="Corrupt JPEG data in tile"):
        convert(testdata("ndpi/test3-DAPI-2-(387).ndpi"), tmp_path / "s", "dzi")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_an_output_error_not_the_inputs(testdata, tmp_path, monkeypatch):
    import pyvips

    from tilewright.outputs import WRITERS

    def full_disk(self, image, staging):
        raise pyvips.Error("unable to call dzsave", "vips__file_write: write failed: No space left on device")

    monkeypatch.setattr(WRITERS["dzi"], "write", full_disk)
    with pytest.raises(OutputWriteError, match="No space left on device") as caught:
        convert(testdata("jpeg-png/boxes.png"), tmp_path / "img", "dzi")
    assert (caught.value.exit_code, caught.value.http_status) == (1, 500)
    assert not isinstance(caught.value, InputError) and leftovers(tmp_path) == []


def test_tiff_tile_size_must_be_a_multiple_of_16():
    with pytest.raises(InputError, match="multiple of 16"):
        make_options("tiff", Settings(), tile_size=250)


def test_one_options_object_serves_many_files_without_carrying_a_resolution_over(testdata, big_pyramid, tmp_path):
    """`import` converts a folder with one options object: a slide's mpp must not end up in the next file."""
    import tifffile

    settings = Settings(data_dir=tmp_path)
    options = make_options("tiff", settings)
    convert(testdata("svs/cmu-1-small-region.svs"), tmp_path / "with-mpp", "tiff", options=options, settings=settings)
    assert options.mpp is None  # the caller's object is left as it was
    convert(big_pyramid, tmp_path / "without", "tiff", options=options, settings=settings)
    with tifffile.TiffFile(tmp_path / "with-mpp.tiff") as tif:
        assert tif.pages[0].tags["ResolutionUnit"].value == 3  # cm: the SVS's resolution was written
        svs_resolution = tif.pages[0].tags["XResolution"].value
    with tifffile.TiffFile(tmp_path / "without.tiff") as tif:
        tags = tif.pages[0].tags
        assert "XResolution" not in tags or tags["XResolution"].value != svs_resolution
