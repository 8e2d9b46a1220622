#!/usr/bin/env python3
"""Benchmark: pyramidal TIFF output of a JPEG-tiled source, three ways, each in its own fresh process.

    tilewright   `tilewright convert SRC -o OUT --to tiff` (pass-through: stored tiles copied, the rest rendered)
    pyvips       a plain `new_from_file(SRC).tiffsave(OUT, tile=True, pyramid=True, compression="jpeg", Q=85)`
                 with the same tile size as tilewright's output (the source's): the libvips way
    cp           `cp SRC OUT`: the disk's limit

Inputs: the real Aperio SVS (shared/testdata/svs/cmu-1-small-region.svs) and a generated 40,000 x 40,000
JPEG-tiled pyramid with scanner-like 4x levels (10,000, 2,500, 625; 256-pixel tiles, quality 85), made at
the start of the run from the SVS's tissue repeated (libvips writes each level, tifffile joins them).
The ways run alternately, `--repeat` times each (default 3); the best wall time of each is kept, and the
ratios are tilewright / pyvips and tilewright / cp. Targets: <= 0.2x pyvips, <= 3x cp.

    .venv/bin/python benchmarks/convert_tiff.py                  # about 5 minutes on 2 quiet cores
    .venv/bin/python benchmarks/convert_tiff.py --size 10000     # a smaller generated pyramid
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TILEWRIGHT = str(Path(sys.executable).with_name("tilewright"))
WAYS = ("tilewright", "pyvips", "cp")
PYVIPS_SCRIPT = """
import sys, pyvips
src, out, tile = sys.argv[1], sys.argv[2], int(sys.argv[3])
image = pyvips.Image.new_from_file(src, access="sequential")
image.tiffsave(out, tile=True, tile_width=tile, tile_height=tile, pyramid=True, compression="jpeg", Q=85,
               bigtiff=image.width * image.height * 3 > 3 * 2**30, keep="none")
"""


def testdata() -> Path:
    return Path(os.environ.get("TILEWRIGHT_TESTDATA") or ROOT.parent / "shared" / "testdata")


def generate(path: Path, size: int) -> None:
    """A `size` x `size` JPEG-tiled pyramid with 4x levels, from the SVS's tissue repeated."""
    import pyvips
    import tifffile

    tissue = pyvips.Image.new_from_file(str(testdata() / "svs/cmu-1-small-region.svs"))
    parts = []
    side, step = size, 1
    while side >= 256 or not parts:
        small = tissue if step == 1 else tissue.resize(1 / step)
        level = small.replicate(-(-side // small.width), -(-side // small.height)).crop(0, 0, side, side)
        part = path.with_name(f"part-{step}.tiff")
        level.tiffsave(str(part), tile=True, tile_width=256, tile_height=256, compression="jpeg", Q=85, bigtiff=True)
        parts.append(part)
        side, step = side // 4, step * 4
    with tifffile.TiffWriter(path, bigtiff=True) as out:
        for number, part in enumerate(parts):
            with tifffile.TiffFile(part) as tif:
                page = tif.pages[0]
                handle = tif.filehandle

                def tiles(page=page, handle=handle):
                    for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                        handle.seek(offset)
                        yield handle.read(count)

                out.write(
                    tiles(),
                    shape=page.shape,
                    dtype="uint8",
                    tile=(256, 256),
                    compression="jpeg",
                    photometric="ycbcr",
                    subsampling=page.subsampling,
                    jpegtables=page.jpegtables,
                    subfiletype=1 if number else 0,
                    metadata=None,
                )
            part.unlink()


def source_tile(path: Path) -> int:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tif.pages[0].tilewidth


def run(way: str, source: Path, out: Path, tile: int) -> float:
    if out.exists():
        out.unlink()
    commands = {
        "tilewright": [TILEWRIGHT, "convert", str(source), "-o", str(out), "--to", "tiff"],
        "pyvips": [sys.executable, "-c", PYVIPS_SCRIPT, str(source), str(out), str(tile)],
        "cp": ["cp", str(source), str(out)],
    }
    started = time.perf_counter()
    subprocess.run(commands[way], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=40_000, help="side of the generated pyramid")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tw-bench-tiff-") as folder:
        work = Path(folder)
        generated = work / f"generated-{args.size}.tiff"
        started = time.perf_counter()
        generate(generated, args.size)
        print(
            f"generated {generated.name} ({generated.stat().st_size / 2**20:.0f} MiB) in "
            f"{time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        inputs = {"svs-jpeg": testdata() / "svs/cmu-1-small-region.svs", f"tiff{args.size // 1000}k-4x": generated}
        rows = []
        for name, source in inputs.items():
            tile = source_tile(source)
            best = dict.fromkeys(WAYS, float("inf"))
            for _ in range(args.repeat):
                for way in WAYS:  # alternating, so that the machine's load falls on every way alike
                    best[way] = min(best[way], run(way, source, work / f"out-{way}.tiff", tile))
                    print(f"{name} {way}: {best[way]:.2f} s", file=sys.stderr)
            size = source.stat().st_size / 2**20
            rows.append(
                f"| {name} ({size:.0f} MiB) | {best['tilewright']:.2f} | {best['pyvips']:.2f} | {best['cp']:.2f} | "
                f"{best['tilewright'] / best['pyvips']:.2f}x | {best['tilewright'] / best['cp']:.1f}x |"
            )
    print(f"{datetime.date.today()}, best of {args.repeat}, `benchmarks/convert_tiff.py --size {args.size}`:\n")
    print("| input | tilewright s | pyvips tiffsave s | cp s | vs pyvips (target <= 0.2x) | vs cp (target <= 3x) |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
