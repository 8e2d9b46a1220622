"""Benchmark: the default recipe with tilewright against the Pillow upload pipeline it replaces.

    .venv/bin/python benchmarks/recipe.py            # full run: 24 MP JPEG, 12k PNG, 20k JPEG, 30k TIFF, 40k JPEG
    .venv/bin/python benchmarks/recipe.py --quick    # small inputs, a minute or so
    .venv/bin/python benchmarks/recipe.py --inputs /tmp/tw-bench --repeat 5 --only PNG   # median of 5, PNG only

Both ways make the same outputs from the same inputs (three thumbnails, an optimised
copy, a watermarked copy, metadata.json); the DZI that the default recipe adds for
slides is timed separately (Pillow's pipeline has no pyramid). Each way runs in its
own subprocess; peak memory is the child's peak RSS from `os.wait4`. The Pillow
child's address space is capped (`--pillow-memory-gib`, default 16) so that an
input it cannot handle fails instead of taking the machine down. Inputs are
generated in a temporary folder (never committed), except the 20,000 x 14,000 JPEG,
which is `shared/testdata/jpeg-png/giant-image.jpg`.

Both ways are timed the same way: the wall time of a fresh interpreter running the
whole pipeline, start-up and exit included. With `--repeat N` the two ways take
turns N times and the table shows the median time and the highest peak RSS (a way
that fails once is not run again): on a shared machine one run can be far off.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTDATA = Path(os.environ.get("TILEWRIGHT_TESTDATA", REPO.parent / "shared" / "testdata"))
PHOTO = TESTDATA / "jpeg-png" / "2569067123_aca715a2ee_o.jpg"
GIANT = TESTDATA / "jpeg-png" / "giant-image.jpg"
WATERMARK_TEXT = "tilewright"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


# -- the Pillow pipeline, as the old blob-triggered function did it ------------------------


def pillow_pipeline(source: Path, outdir: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    Image.MAX_IMAGE_PIXELS = None  # the big inputs need it, as the old pipeline would have had to
    outdir.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()  # the blob trigger hands the function the whole upload
    image = Image.open(io.BytesIO(data))
    outputs = []

    def record(name: str, path: Path, im: Image.Image) -> None:
        size = path.stat().st_size
        outputs.append(
            {
                "name": name,
                "file": path.name,
                "width": im.width,
                "height": im.height,
                "bytes": size,
                "compression_ratio": round(len(data) / size, 4),
            }
        )

    for name, box in (
        ("thumbnail_small", (150, 150)),
        ("thumbnail_medium", (300, 300)),
        ("thumbnail_large", (600, 600)),
    ):
        thumb = image.copy()
        if thumb.mode in ("RGBA", "LA", "P"):
            thumb = thumb.convert("RGBA")
            background = Image.new("RGB", thumb.size, (255, 255, 255))
            background.paste(thumb, mask=thumb.split()[3])
            thumb = background
        thumb.thumbnail(box, Image.LANCZOS)
        path = outdir / f"{name}.jpg"
        thumb.save(path, "JPEG", quality=85)
        record(name, path, thumb)

    optimized = image.copy()
    optimized = optimized.convert("RGB")
    optimized.thumbnail((1920, 1920), Image.LANCZOS)
    path = outdir / "optimized.jpg"
    optimized.save(path, "JPEG", quality=85, optimize=True)
    record("optimized", path, optimized)

    marked = image.convert("RGBA")
    overlay = Image.new("RGBA", marked.size, (255, 255, 255, 0))
    draw = ImageDraw.Draw(overlay)
    font_size = max(12, marked.width // 20)
    try:
        font = ImageFont.truetype(FONT, font_size)
    except OSError:
        font = ImageFont.load_default(font_size)
    left, top, right, bottom = draw.textbbox((0, 0), WATERMARK_TEXT, font=font)
    margin = font_size // 2
    position = (marked.width - (right - left) - margin, marked.height - (bottom - top) - margin)
    draw.text(position, WATERMARK_TEXT, font=font, fill=(255, 255, 255, 128))
    marked = Image.alpha_composite(marked, overlay).convert("RGB")
    path = outdir / "watermarked.jpg"
    marked.save(path, "JPEG", quality=90)
    record("watermarked", path, marked)

    metadata = {
        "filename": source.name,
        "width": image.width,
        "height": image.height,
        "format": image.format,
        "mode": image.mode,
        "bytes": len(data),
        "processed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "outputs": outputs,
    }
    (outdir / "metadata.json").write_text(json.dumps(metadata, indent=2))


def tilewright_pipeline(source: Path, outdir: Path, recipe: str) -> None:
    from tilewright.recipes import run_recipe

    run_recipe(source, outdir, classic_recipe() if recipe == "classic" else recipe)


# -- inputs ------------------------------------------------------------------------------


class _Cached:
    """Skips writing an input that a previous run (`--inputs DIR`) already generated."""

    def __init__(self, image, path_exists: bool) -> None:
        self.image, self.exists = image, path_exists

    def __getattr__(self, name):
        save = getattr(self.image, name)
        return (lambda *a, **k: None) if self.exists else save


def make_inputs(folder: Path, quick: bool, with_40k: bool) -> list[tuple[str, Path]]:
    """Photo-like inputs, generated from the real photo in shared/testdata (enlarged and tiled)."""
    import pyvips

    photo = pyvips.Image.new_from_file(str(PHOTO))
    made = {"path": None}

    def canvas(width: int, height: int):
        # the photo, enlarged 2x and repeated: real-looking texture at any size, computed lazily
        tile = photo.resize(2.0)
        image = tile.replicate(width // tile.width + 1, height // tile.height + 1).crop(0, 0, width, height)
        return _Cached(image, made["path"] is not None and made["path"].exists())

    def at(path: Path) -> Path:
        made["path"] = path
        return path

    inputs = []
    jpeg_side = (3000, 2000) if quick else (6000, 4000)
    path = at(folder / f"photo-{jpeg_side[0] * jpeg_side[1] // 10**6}mp.jpg")
    canvas(*jpeg_side).jpegsave(str(path), Q=90)
    inputs.append((f"{jpeg_side[0]} x {jpeg_side[1]} JPEG", path))

    png_side = 3000 if quick else 12000
    path = at(folder / f"square-{png_side}.png")
    canvas(png_side, png_side).pngsave(str(path), compression=3)
    inputs.append((f"{png_side:,} x {png_side:,} PNG", path))

    if not quick:
        inputs.append(("20,000 x 14,000 JPEG (giant-image.jpg)", GIANT))

    slide_side = 6000 if quick else 30000
    path = at(folder / f"slide-{slide_side}.tiff")
    canvas(slide_side, slide_side).tiffsave(
        str(path), tile=True, pyramid=True, compression="jpeg", Q=85, tile_width=256, tile_height=256, bigtiff=True
    )
    inputs.append((f"{slide_side:,} x {slide_side:,} pyramidal TIFF", path))

    if with_40k and not quick:
        path = at(folder / "huge-40000.jpg")
        canvas(40000, 40000).jpegsave(str(path), Q=85)
        inputs.append(("40,000 x 40,000 JPEG", path))
    return inputs


# -- running -----------------------------------------------------------------------------


def run_child(way: str, source: Path, outdir: Path, recipe: str, memory_gib: float | None, env: dict[str, str]) -> dict:
    """Run one way in a fresh interpreter; wall time and the child's peak RSS."""
    command = [sys.executable, __file__, "--worker", way, str(source), str(outdir), recipe]

    def cap() -> None:
        if memory_gib:
            limit = int(memory_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, preexec_fn=cap)
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    _pid, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    ok = child.returncode == 0
    error = ""
    if not ok:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        error = lines[-1][:160] if lines else f"exit code {child.returncode}"
    return {"seconds": seconds, "peak_mib": usage.ru_maxrss / 1024, "ok": ok, "error": error}


def classic_recipe():
    """The default recipe without the slide-only DZI: exactly the outputs the Pillow pipeline makes."""
    import tomllib

    from tilewright.recipes import BUILTIN_DIR, parse_recipe

    data = tomllib.loads((BUILTIN_DIR / "default.toml").read_text())
    data["outputs"] = [o for o in data["outputs"] if o.get("kind", "image") != "dzi"]
    return parse_recipe(data, "classic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs only (about a minute)")
    parser.add_argument("--no-40k", action="store_true", help="skip the 40,000 x 40,000 input")
    parser.add_argument("--pillow-memory-gib", type=float, default=16.0, help="address-space cap of the Pillow child")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each way per input, taking turns; the table shows the median time and the highest peak RSS",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="only the inputs whose label contains TEXT (repeatable), e.g. --only PNG",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated inputs and outputs")
    parser.add_argument(
        "--inputs", type=Path, help="folder for the generated inputs, reused if already there (implies --keep)"
    )
    parser.add_argument("--worker", nargs=4, metavar=("WAY", "SOURCE", "OUTDIR", "RECIPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        way, source, outdir, recipe = args.worker
        if way == "pillow":
            pillow_pipeline(Path(source), Path(outdir))
        else:
            tilewright_pipeline(Path(source), Path(outdir), recipe)
        return

    if args.inputs:
        args.keep = True
        args.inputs.mkdir(parents=True, exist_ok=True)
        for old in args.inputs.glob("out-*"):
            shutil.rmtree(old, ignore_errors=True)
    folder = args.inputs or Path(tempfile.mkdtemp(prefix="tw-bench-"))
    env = dict(
        os.environ,
        TILEWRIGHT_MAX_IMAGE_PIXELS=str(2 * 10**9),
        TILEWRIGHT_WATERMARK_TEXT=WATERMARK_TEXT,
        VIPS_WARNING="0",
    )
    try:
        print(f"generating inputs in {folder} ...", file=sys.stderr)
        started = time.perf_counter()
        inputs = make_inputs(folder, args.quick, not args.no_40k)
        if args.only:
            inputs = [(label, path) for label, path in inputs if any(text in label for text in args.only)]
        print(f"  done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        classic = "classic"
        rows = []
        for label, source in inputs:
            print(f"{label}:", file=sys.stderr)
            tw_runs, pil_runs = [], []
            tw_out, pil_out = folder / f"out-tw-{source.stem}", folder / f"out-pil-{source.stem}"
            for _ in range(max(1, args.repeat)):  # each run into an empty folder; the last run's outputs are kept
                if not tw_runs or tw_runs[-1]["ok"]:
                    shutil.rmtree(tw_out, ignore_errors=True)
                    tw_runs.append(run_child("tilewright", source, tw_out, classic, None, env))
                    print(f"  tilewright {tw_runs[-1]}", file=sys.stderr)
                if not pil_runs or pil_runs[-1]["ok"]:
                    shutil.rmtree(pil_out, ignore_errors=True)
                    pil_runs.append(run_child("pillow", source, pil_out, "", args.pillow_memory_gib, env))
                    print(f"  pillow     {pil_runs[-1]}", file=sys.stderr)
            tw, pil = summary(tw_runs), summary(pil_runs)
            dzi = None
            if "TIFF" in label:
                dzi = run_child("tilewright", source, folder / f"out-dzi-{source.stem}", "default", None, env)
                print(f"  tilewright default recipe with DZI {dzi}", file=sys.stderr)
            rows.append((label, source.stat().st_size, tw, pil, dzi))
        print(table(rows, args.pillow_memory_gib))
    finally:
        if args.keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def summary(runs: list[dict]) -> dict:
    """Several runs of one way as one: the median time, the highest peak RSS; failed if any run failed."""
    failed = [r for r in runs if not r["ok"]]
    if failed:
        return failed[0]
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "peak_mib": max(r["peak_mib"] for r in runs),
        "ok": True,
        "error": "",
        "runs": len(runs),
    }


def table(rows, cap_gib: float) -> str:
    out = [
        "| input | file size | tilewright time | tilewright peak RSS | Pillow time | Pillow peak RSS "
        "| speed-up | memory ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, size, tw, pil, dzi in rows:
        tw_time = f"{tw['seconds']:.1f} s" if tw["ok"] else f"failed: {tw['error']}"
        tw_mem = f"{tw['peak_mib']:,.0f} MiB"
        if pil["ok"]:
            pil_time, pil_mem = f"{pil['seconds']:.1f} s", f"{pil['peak_mib']:,.0f} MiB"
            speed = f"{pil['seconds'] / tw['seconds']:.1f}x" if tw["ok"] else "-"
            memory = f"{tw['peak_mib'] / pil['peak_mib']:.2f}" if tw["ok"] else "-"
        else:
            pil_time = f"failed after {pil['seconds']:.0f} s ({pil['error']})"
            pil_mem = f"{pil['peak_mib']:,.0f} MiB (cap {cap_gib:g} GiB)"
            speed = memory = "-"
        out.append(
            f"| {label} | {size / 2**20:,.1f} MiB | {tw_time} | {tw_mem} | {pil_time} | {pil_mem} "
            f"| {speed} | {memory} |"
        )
        if dzi is not None:
            dzi_time = f"{dzi['seconds']:.1f} s" if dzi["ok"] else f"failed: {dzi['error']}"
            out.append(
                f"| {label}, default recipe + DZI | | {dzi_time} | {dzi['peak_mib']:,.0f} MiB | (no DZI) | | | |"
            )
    return "\n".join(out)


if __name__ == "__main__":
    main()
