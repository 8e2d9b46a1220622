"""The `tilewright` command as a user runs it: real processes, exit codes, one line on stderr."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pyvips

from tilewright.staging import STAGING_PREFIX

TILEWRIGHT = str(Path(sys.executable).with_name("tilewright"))


def run(*args, env=None, timeout=120):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([TILEWRIGHT, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=full_env)


def test_info_prints_the_slide_as_json(testdata):
    done = run("info", testdata("svs/cmu-1-small-region.svs"))
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["format"] == "aperio" and info["vendor"] == "aperio" and info["reader"] == "openslide"
    assert (info["width"], info["height"]) == (2220, 2967)
    assert info["levels"] == [{"width": 2220, "height": 2967, "downsample": 1.0}]
    assert (info["tile_width"], info["mpp_x"], info["objective_power"]) == (240, 0.499, 20.0)
    assert info["associated_images"]["label"] == {"width": 387, "height": 463}
    assert info["properties"]["aperio.AppMag"] == "20"


def test_convert_prints_a_summary_and_json(testdata, tmp_path):
    done = run("convert", testdata("svs/cmu-1-small-region.svs"), "-o", tmp_path / "slide", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["tiles"] == 160 and summary["levels"] == 13 and summary["bytes"] > 100_000
    assert summary["seconds"] > 0 and summary["output"].endswith("slide.dzi")
    assert done.stderr == ""  # no progress bar in a pipe
    plain = run("convert", testdata("jpeg-png/boxes.png"), "-o", tmp_path / "boxes", "--to", "tiff")
    assert plain.returncode == 0 and plain.stdout.startswith("wrote ") and "tiles/s" in plain.stdout


def test_options_reach_the_output(testdata, tmp_path):
    done = run(
        "convert",
        testdata("jpeg-png/boxes.png"),
        "-o",
        tmp_path / "b",
        "--tile-size",
        "128",
        "--overlap",
        "2",
        "--format",
        "png",
    )
    assert done.returncode == 0, done.stderr
    dzi = (tmp_path / "b.dzi").read_text()
    assert 'TileSize="128"' in dzi and 'Overlap="2"' in dzi and 'Format="png"' in dzi


def test_quality_lowers_bytes(testdata, tmp_path):
    sizes = {}
    for q in (30, 95):
        done = run(
            "convert",
            testdata("jpeg-png/2569067123_aca715a2ee_o.jpg"),
            "-o",
            tmp_path / f"q{q}",
            "--quality",
            q,
            "--json",
        )
        sizes[q] = json.loads(done.stdout)["bytes"]
    assert sizes[30] < sizes[95] / 2


def test_dry_run_and_overwrite(testdata, tmp_path):
    source = testdata("jpeg-png/boxes.png")
    dry = run("convert", source, "-o", tmp_path / "b", "--dry-run")
    assert dry.returncode == 0 and "would write dzi" in dry.stdout and list(tmp_path.iterdir()) == []
    assert run("convert", source, "-o", tmp_path / "b").returncode == 0
    again = run("convert", source, "-o", tmp_path / "b")
    assert again.returncode == 3 and "--overwrite" in again.stderr
    assert run("convert", source, "-o", tmp_path / "b", "--overwrite").returncode == 0


# Each broken file, and why it is refused. Every one: exit 2, one line naming the file, nothing written.
BROKEN = [
    "broken/broken.svs",  # a text file named .svs
    "broken/unreadable.svs",  # Aperio header, corrupt JPEG tile data
    "broken/unopenable.tiff",  # unknown TIFF compression
    "broken/truncated.jpg",
    "broken/libvips/truncated.jpg",
    "broken/truncated.png",
    "broken/truncated.gif",
    "broken/broken.png",
    "broken/broken_data_stream.png",
    "broken/corrupt-header.jpg",
    "broken/decompression_bomb.gif",  # header claims 65535 x 66601
    "broken/crash-0c7e0e8e11ce787078f00b5b0ca409a167f070e0.tif",
    "broken/crash-2020-10-test.tif",
    "broken/libtiff_segfault.tif",  # declares 900 x 65535 x 65535
    "broken/oom-225817ca0f8c663be7ab4b9e717b02c661e66834.tif",
    "broken/seek_too_large.tif",
    "dicom/small_dicom.dcm",  # a DICOM WSI level whose other instances are missing
]


@pytest.mark.parametrize("relative", BROKEN)
def test_broken_files_exit_2_with_one_line_and_write_nothing(testdata, tmp_path, relative):
    source = testdata(relative)
    done = run("convert", source, "-o", tmp_path / "out" / "x")
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tilewright: error: ") and source.name in lines[0]
    assert "Traceback" not in done.stderr
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []


def test_empty_file_and_pixel_limit(testdata, tmp_path):
    empty = tmp_path / "empty.ndpi"
    empty.touch()
    done = run("info", empty)
    assert done.returncode == 2 and "file is empty" in done.stderr
    limited = run(
        "convert",
        testdata("jpeg-png/giant-image.jpg"),
        "-o",
        tmp_path / "g",
        env={"TILEWRIGHT_MAX_IMAGE_PIXELS": "100000000"},
    )
    assert limited.returncode == 2
    assert "280,000,000 pixels is over the limit of 100,000,000" in limited.stderr


def test_killed_conversion_leaves_no_finished_output_and_the_next_run_cleans_up(tmp_path):
    import pyvips

    source = tmp_path / "large.tiff"
    x = pyvips.Image.xyz(16000, 16000)
    ((x[0] ^ x[1]) % 251).cast("uchar").tiffsave(str(source), tile=True, compression="jpeg", Q=90)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [TILEWRIGHT, "convert", str(source), "-o", str(out / "large")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until tiles are being written
        staged = list(out.glob(f"{STAGING_PREFIX}*/large_files/*/*.jpeg")) if out.exists() else []
        if len(staged) > 50:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("conversion never started writing tiles")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "large.dzi").exists() and not (out / "large_files").exists()
    assert any(p.name.startswith(STAGING_PREFIX) for p in out.iterdir())  # what the kill left is hidden staging
    done = run("convert", source, "-o", out / "large", timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["large.dzi", "large_files"]  # stale staging removed


def test_import_converts_in_parallel_skips_done_and_reports_failures(testdata, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(testdata("jpeg-png/boxes.png"), src / "boxes.png")
    shutil.copy(testdata("svs/cmu-1-small-region.svs"), src / "sub" / "cmu.svs")
    shutil.copy(testdata("broken/truncated.jpg"), src / "truncated.jpg")
    (src / "README.txt").write_text("not an image")
    first = run("import", src, "-o", tmp_path / "out", "--workers", "2", "--json")
    assert first.returncode == 2  # one file failed
    summary = json.loads(first.stdout)
    assert sorted(Path(c["source"]).name for c in summary["converted"]) == ["boxes.png", "cmu.svs"]
    assert [Path(f["source"]).name for f in summary["failed"]] == ["truncated.jpg"]
    assert "corrupt or truncated" in summary["failed"][0]["error"]
    assert (tmp_path / "out" / "sub" / "cmu.dzi").exists() and (tmp_path / "out" / "boxes.dzi").exists()
    second = run("import", src, "-o", tmp_path / "out")
    assert "converted 0, skipped 2 already done, failed 1" in second.stdout


def test_unknown_command_and_version():
    assert run("frobnicate").returncode == 2
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("tilewright ")


@pytest.mark.parametrize("background", ["white", "#fff", "black", "Grey"])
def test_background_is_any_colour_the_operations_accept(testdata, tmp_path, background):
    # TILEWRIGHT_BACKGROUND=white used to fail for every file, blaming the input ("colour must be #rrggbb")
    source = testdata("jpeg-png/boxes.png")
    result = run("info", source, env={"TILEWRIGHT_BACKGROUND": background})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["width"] > 0
    # a transparent image flattened onto it when converted: its pixels are the colour
    clear = tmp_path / "clear.png"
    pyvips.Image.black(64, 64, bands=4).pngsave(str(clear))
    assert (
        run(
            "convert", clear, "-o", tmp_path / "clear", "--format", "png", env={"TILEWRIGHT_BACKGROUND": background}
        ).returncode
        == 0
    )
    tile = pyvips.Image.new_from_file(str(tmp_path / "clear_files" / "6" / "0_0.png"))
    assert tile.getpoint(10, 10)[0] == {"white": 255, "#fff": 255, "black": 0, "Grey": 128}[background]


def test_a_bad_setting_is_one_line_naming_it_and_exit_2(testdata):
    result = run("info", testdata("jpeg-png/boxes.png"), env={"TILEWRIGHT_BACKGROUND": "notacolour"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tilewright: error: bad setting TILEWRIGHT_BACKGROUND: Value error, colour must be #rrggbb, #rgb or a name "
        "like white, not 'notacolour'"
    ]


def test_a_truncated_png_saved_by_a_chain_is_the_inputs_fault_not_the_disks(testdata, tmp_path):
    # libvips says "vips2png: unable to write to target" when the input fails to decode during a save
    result = run(
        "process", testdata("broken/truncated.png"), "-o", tmp_path / "out", "--op", "resize=0.9", "--format", "png"
    )
    assert result.returncode == 2, result.stderr
    assert "cannot write output" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
