#!/usr/bin/env python3
"""Benchmark: one slide converted to Deep Zoom three ways, each in its own fresh process.

    tilewright   the real CLI: `tilewright convert SRC -o OUT --to dzi --quality 85`
    pyvips       a plain `new_from_file(...).dzsave(...)` with the same parameters: the libvips limit
    dzg          OpenSlide's DeepZoomGenerator, tiles saved with Pillow by a pool of 2 worker
                 processes, laid out like openslide-python's examples/deepzoom/deepzoom_tile.py

All three write 254 px tiles, overlap 1, JPEG quality 85. Wall time is measured around
the child process, CPU time (user + system) and peak RSS come from its rusage (`os.wait4`),
tiles are counted by walking the output folder. The "conv s" column is the time the
child itself reports for the conversion, without interpreter start-up and imports.

Inputs (names for --inputs; any other value is taken as a path to a file):
    svs-jpeg   shared/testdata/svs/cmu-1-small-region.svs      Aperio JPEG (libvips reads it natively)
    svs-jp2k   shared/testdata/svs/tcga-cr-7395-01a-01-ts1.svs Aperio JPEG 2000 (OpenSlide only)
    ndpi       shared/testdata/ndpi/test3-DAPI-2-(387).ndpi    Hamamatsu NDPI (OpenSlide format; this one is
               small enough for libvips' tiffload too, so its pyvips row is measured, not n/a)
    tiff30k    a 30,000 x 30,000 tiled JPEG pyramidal TIFF generated at run time (tiff10k with --quick)

Targets: tilewright wall <= 1.05x pyvips; DeepZoomGenerator wall >= 3x tilewright;
tilewright peak RSS < 1 GiB on the generated image and on OpenSlide-only formats.

    .venv/bin/python benchmarks/convert.py                 # full run: about 6 minutes on 2 quiet cores
    .venv/bin/python benchmarks/convert.py --quick         # 10k generated image instead of 30k: about 1.5 min
    .venv/bin/python benchmarks/convert.py --inputs ndpi,svs-jp2k --repeat 3 --json out.json

The shared test data folder is ../shared/testdata from the repository root, or $TILEWRIGHT_TESTDATA.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TILE_SIZE, OVERLAP, QUALITY, DZG_WORKERS = 254, 1, 85, 2
WAYS = ("tilewright", "pyvips", "dzg")
EXIT_NA = 3  # a child's "this way cannot read this input" (not a failure of the benchmark)
NA_TEXT = {
    "pyvips": "n/a (libvips wheel cannot read this format)",
    "dzg": "n/a (OpenSlide cannot open this file)",
}
RATIO_TARGET, DZG_TARGET, RSS_TARGET_MIB = 1.05, 3.0, 1024


# -- inputs ------------------------------------------------------------------------------------------------


@dataclass
class Input:
    name: str
    path: Path | None  # None: generated at run time
    kind: str  # "native" | "openslide-only" | "generated" | "file"
    size: int = 0  # generated images: width = height

    @property
    def rss_checked(self) -> bool:
        return self.kind in ("generated", "openslide-only")


def testdata_dir() -> Path:
    return Path(os.environ.get("TILEWRIGHT_TESTDATA") or ROOT.parent / "shared" / "testdata")


def known_inputs(quick: bool) -> dict[str, Input]:
    data = testdata_dir()
    size = 10_000 if quick else 30_000
    big = f"tiff{size // 1000}k"
    return {
        "svs-jpeg": Input("svs-jpeg", data / "svs" / "cmu-1-small-region.svs", "native"),
        "svs-jp2k": Input("svs-jp2k", data / "svs" / "tcga-cr-7395-01a-01-ts1.svs", "openslide-only"),
        "ndpi": Input("ndpi", data / "ndpi" / "test3-DAPI-2-(387).ndpi", "openslide-only"),
        big: Input(big, None, "generated", size),
    }


def choose_inputs(spec: str | None, quick: bool) -> list[Input]:
    known = known_inputs(quick)
    if not spec:
        return list(known.values())
    chosen = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item in ("tiff30k", "tiff10k"):  # either name works with or without --quick
            size = 30_000 if item == "tiff30k" else 10_000
            chosen.append(Input(item, None, "generated", size))
        elif item in known:
            chosen.append(known[item])
        elif Path(item).is_file():
            chosen.append(Input(Path(item).name, Path(item).resolve(), "file"))
        else:
            raise SystemExit(f"unknown input {item!r}: use {', '.join(known)} or a path to a file")
    return chosen


# -- running one child -------------------------------------------------------------------------------------


@dataclass
class Run:
    status: str  # "ok" | "n/a" | "failed"
    wall: float = 0.0
    cpu: float = 0.0
    rss_mib: float = 0.0
    tiles: int = 0
    conv: float | None = None  # the child's own timing of the conversion
    other: float = 0.0  # CPU other processes used during the run, in cores (0.5 = half a core)
    reason: str = ""

    @property
    def tiles_per_s(self) -> float:
        return self.tiles / self.wall if self.wall else 0.0


@dataclass
class Result:
    input: str
    way: str
    runs: list[Run] = field(default_factory=list)

    @property
    def best(self) -> Run:
        """The fastest successful run (or the first run, when none succeeded)."""
        ok = [r for r in self.runs if r.status == "ok"]
        return min(ok, key=lambda r: r.wall) if ok else self.runs[0]


def tilewright_command() -> list[str]:
    exe = Path(sys.executable).parent / "tilewright"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tilewright.cli"]


def child_command(way: str, src: Path, out: Path, access: str) -> list[str]:
    if way == "tilewright":
        return tilewright_command() + [
            "convert",
            str(src),
            "-o",
            str(out),
            "--to",
            "dzi",
            "--tile-size",
            str(TILE_SIZE),
            "--overlap",
            str(OVERLAP),
            "--quality",
            str(QUALITY),
            "--json",
        ]
    extra = ["--access", access] if way == "pyvips" else []
    return [sys.executable, str(Path(__file__).resolve()), "--child", way, str(src), str(out)] + extra


@dataclass
class ChildRun:
    code: int
    wall: float
    cpu: float
    rss_mib: float
    other: float  # cores' worth of CPU used by other processes meanwhile
    stdout: str
    stderr: str


def busy_seconds() -> float | None:
    """CPU seconds spent by the whole machine so far (all cores, idle and iowait excluded)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def wait_until_quiet(limit: float, threshold: float = 0.15) -> float:
    """Wait (at most `limit` s) until other processes use under `threshold` of a core; the load last seen."""
    deadline = time.monotonic() + limit
    while True:
        before, t0 = busy_seconds(), time.monotonic()
        time.sleep(0.5)
        after = busy_seconds()
        if before is None or after is None:
            return 0.0
        load = (after - before) / (time.monotonic() - t0)
        if load < threshold or time.monotonic() >= deadline:
            return load
        time.sleep(2)


def run_child(cmd: list[str], logdir: Path, timeout: float) -> ChildRun:
    """Run `cmd` in a new session and measure it."""
    logdir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logdir / "stdout", logdir / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        busy_before = busy_seconds()
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        timer = threading.Timer(timeout, _kill_group, (proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        busy_after = busy_seconds()
    proc.returncode = os.waitstatus_to_exitcode(status)
    _kill_group(proc.pid)  # stray grandchildren, if any
    cpu = usage.ru_utime + usage.ru_stime
    other = 0.0
    if busy_before is not None and busy_after is not None and wall > 0:
        other = max(0.0, (busy_after - busy_before - cpu) / wall)
    return ChildRun(
        proc.returncode,
        wall,
        cpu,
        usage.ru_maxrss / 1024,  # ru_maxrss: KiB on Linux
        other,
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
    )


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def count_tiles(out: Path) -> int:
    folder = out.with_name(out.name + "_files")
    return sum(1 for _root, _dirs, names in os.walk(folder) for n in names if not n.endswith((".dzi", ".xml", ".json")))


def last_json(text: str) -> dict:
    """The JSON object a child printed last (the tilewright CLI prints an indented one)."""
    start = text.rfind("\n{")
    start = 0 if start < 0 and text.lstrip().startswith("{") else start
    try:
        return json.loads(text[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        return {}


def measure(way: str, src: Path, work: Path, access: str, timeout: float) -> Run:
    out = work / f"out-{way}" / "slide"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        child = run_child(child_command(way, src, out, access), work / f"log-{way}", timeout)
        info = last_json(child.stdout)
        if child.code == EXIT_NA:
            return Run("n/a", reason=info.get("reason", "") or _tail(child.stderr))
        if child.code != 0:
            reason = (
                "killed by the timeout"
                if child.code == -signal.SIGKILL
                else f"exit {child.code}: {_tail(child.stderr)}"
            )
            return Run("failed", child.wall, child.cpu, child.rss_mib, other=child.other, reason=reason)
        conv = info.get("seconds")
        return Run(
            "ok",
            child.wall,
            child.cpu,
            child.rss_mib,
            count_tiles(out),
            float(conv) if conv is not None else None,
            child.other,
        )
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def _tail(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-2:])[:300]


def warm_cache(path: Path) -> None:
    with open(path, "rb") as handle:
        while handle.read(1 << 24):
            pass


def is_tiled_tiff(path: Path) -> bool:
    """Whether the first page is tiled: the plain pyvips call then reads it with random access."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return bool(tif.pages[0].is_tiled)
    except Exception:  # noqa: BLE001 - not a TIFF: stream it
        return False


# -- children ----------------------------------------------------------------------------------------------


def child_pyvips(src: str, out: str, access: str) -> int:
    import pyvips

    started = time.perf_counter()
    try:
        options = {"access": "sequential"} if access == "sequential" else {}
        image = pyvips.Image.new_from_file(src, **options)
        image.dzsave(
            out, tile_size=TILE_SIZE, overlap=OVERLAP, suffix=f".jpeg[Q={QUALITY},optimize_coding]", keep="none"
        )
    except pyvips.Error as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("unable to call")]
        print(json.dumps({"reason": " ".join(lines[:2])[:300]}))
        return EXIT_NA
    print(json.dumps({"seconds": round(time.perf_counter() - started, 3)}))
    return 0


def _dzg_worker(queue, src: str) -> None:
    """One tile worker, as deepzoom_tile.py's TileWorker: its own slide and generator."""
    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    slide = openslide.open_slide(src)
    dz = DeepZoomGenerator(slide, TILE_SIZE, OVERLAP, limit_bounds=False)
    while True:
        item = queue.get()
        if item is None:
            queue.task_done()
            break
        level, address, path = item
        tile = dz.get_tile(level, address)
        tile.save(path, quality=QUALITY)
        queue.task_done()
    slide.close()


def child_dzg(src: str, out: str) -> int:
    import multiprocessing

    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    started = time.perf_counter()
    try:
        vendor = openslide.OpenSlide.detect_format(src)
    except openslide.OpenSlideError:
        vendor = None
    if vendor is None:  # open_slide would fall back to Pillow (ImageSlide): not the OpenSlide way
        print(json.dumps({"reason": "OpenSlide does not recognise the file"}))
        return EXIT_NA
    ctx = multiprocessing.get_context("fork")
    slide = openslide.open_slide(src)
    dz = DeepZoomGenerator(slide, TILE_SIZE, OVERLAP, limit_bounds=False)
    queue = ctx.JoinableQueue(2 * DZG_WORKERS)
    workers = [ctx.Process(target=_dzg_worker, args=(queue, src), daemon=True) for _ in range(DZG_WORKERS)]
    for worker in workers:
        worker.start()
    base = Path(out)
    files = base.with_name(base.name + "_files")
    for level in range(dz.level_count):
        folder = files / str(level)
        folder.mkdir(parents=True, exist_ok=True)
        cols, rows = dz.level_tiles[level]
        for row in range(rows):
            for col in range(cols):
                queue.put((level, (col, row), str(folder / f"{col}_{row}.jpeg")))
    for _ in workers:
        queue.put(None)
    queue.join()
    for worker in workers:
        worker.join()
    base.with_name(base.name + ".dzi").write_text(dz.get_dzi("jpeg"))
    slide.close()
    failed = [w.exitcode for w in workers if w.exitcode]
    if failed:
        print(f"dzg: worker exit codes {failed}", file=sys.stderr)
        return 1
    print(json.dumps({"seconds": round(time.perf_counter() - started, 3)}))
    return 0


def textured(size: int, block: int = 4093):
    """A size x size RGB image looking (and compressing) like an H&E slide: stained tissue and background.

    Tissue is noise at three scales (blobs, grain, per-pixel); about half the area is near-white
    background. A 4093 px block is computed once and mirrored/replicated to full size, so
    generating 30k x 30k costs little more than encoding it.
    """
    import pyvips

    def noise(scale: int, sigma: float, seed: int, mean: float = 0.0):
        small = pyvips.Image.gaussnoise(block // scale + 2, block // scale + 2, sigma=sigma, mean=mean, seed=seed)
        return (small.resize(scale, kernel="linear") if scale > 1 else small).crop(0, 0, block, block)

    base = (noise(32, 60, 1, 128) + noise(4, 30, 2)).cast("short")
    fine = noise(1, 6, 3).cast("short")
    tissue = (base // 2 + 150 + fine).bandjoin([base + 60 + fine, base // 2 + 170 + fine]).cast("uchar")
    background = (fine // 3 + 238).bandjoin([fine // 3 + 236, fine // 3 + 240]).cast("uchar")
    mask = noise(512, 1, 4) > 0.1
    block_image = mask.ifthenelse(tissue, background).copy_memory()
    quad = block_image.join(block_image.fliphor(), "horizontal").join(
        block_image.flipver().join(block_image.rot180(), "horizontal"), "vertical"
    )
    reps = -(-size // quad.width)
    return quad.replicate(reps, reps).crop(0, 0, size, size).copy(interpretation="srgb")


def child_generate(size: int, out: str) -> int:
    started = time.perf_counter()
    textured(size).tiffsave(
        out, tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg", Q=QUALITY, bigtiff=True
    )
    print(json.dumps({"seconds": round(time.perf_counter() - started, 3)}))
    return 0


# -- report ------------------------------------------------------------------------------------------------


@dataclass
class Check:
    input: str
    name: str
    value: float | None
    target: str
    passed: bool | None  # None: not measurable
    note: str = ""


def compute_checks(inp: Input, results: dict[str, Result]) -> list[Check]:
    checks = []
    tw, pv, dzg = (results[w].best if w in results else None for w in WAYS)
    busy = max((r.other for r in (tw, pv, dzg) if r is not None and r.status == "ok"), default=0.0)
    disturbed = f"; disturbed: other processes used {busy:.1f} cores" if busy > 0.2 else ""
    tw_ok = tw is not None and tw.status == "ok"
    if tw_ok and pv is not None:
        if pv.status == "ok":
            ratio = tw.wall / pv.wall
            parts = [
                f"conversion only {tw.conv / pv.conv:.2f}x" if tw.conv and pv.conv else "",
                f"CPU {tw.cpu / pv.cpu:.2f}x" if pv.cpu else "",
            ]
            if inp.kind == "openslide-only":
                parts.append("libvips reads this file itself; tilewright uses the OpenSlide bridge")
            note = "; ".join(p for p in parts if p) + disturbed
            checks.append(
                Check(
                    inp.name, "tilewright / pyvips wall", ratio, f"<= {RATIO_TARGET:.2f}x", ratio <= RATIO_TARGET, note
                )
            )
        else:
            checks.append(
                Check(inp.name, "tilewright / pyvips wall", None, f"<= {RATIO_TARGET:.2f}x", None, "pyvips n/a")
            )
    if tw_ok and dzg is not None:
        if dzg.status == "ok":
            ratio = dzg.wall / tw.wall
            parts = [
                f"conversion only {dzg.conv / tw.conv:.2f}x" if tw.conv and dzg.conv else "",
                f"CPU {dzg.cpu / tw.cpu:.2f}x" if tw.cpu else "",
            ]
            note = "; ".join(p for p in parts if p) + disturbed
            checks.append(
                Check(inp.name, "DZG / tilewright wall", ratio, f">= {DZG_TARGET:.0f}x", ratio >= DZG_TARGET, note)
            )
        else:
            checks.append(Check(inp.name, "DZG / tilewright wall", None, f">= {DZG_TARGET:.0f}x", None, "DZG n/a"))
    if tw is not None and inp.rss_checked:
        checks.append(
            Check(
                inp.name,
                "tilewright peak RSS MiB",
                tw.rss_mib if tw_ok else None,
                f"< {RSS_TARGET_MIB}",
                (tw.rss_mib < RSS_TARGET_MIB) if tw_ok else False,
            )
        )
    if tw is not None and not tw_ok:
        checks.append(Check(inp.name, "tilewright converts it", None, "ok", False, tw.reason))
    return checks


def format_table(rows: list[list[str]], right: set[int]) -> str:
    """Aligned plain text; a row of 3 cells (input, way, text) lets its text run over the numeric columns."""
    full = [r for r in rows if len(r) == len(rows[0])]
    widths = [max(len(r[i]) for r in full) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.rjust(w) if i in right and len(row) == len(widths) else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def results_table(inputs: list[Input], results: dict[str, dict[str, Result]], repeat: int) -> str:
    header = ["input", "way", "wall s", "conv s", "CPU s", "peak RSS MiB", "tiles", "tiles/s", "other load"]
    if repeat > 1:
        header.append(f"wall s of {repeat} runs")
    rows = [header]
    notes = []
    for inp in inputs:
        for way in WAYS:
            res = results.get(inp.name, {}).get(way)
            if res is None:
                continue
            run = res.best
            if run.status == "ok":
                row = [
                    inp.name,
                    way,
                    f"{run.wall:.2f}",
                    f"{run.conv:.2f}" if run.conv is not None else "-",
                    f"{run.cpu:.2f}",
                    f"{run.rss_mib:.0f}",
                    str(run.tiles),
                    f"{run.tiles_per_s:.0f}",
                    f"{run.other:.2f}",
                ]
                if repeat > 1:
                    row.append(" ".join(f"{r.wall:.2f}" if r.status == "ok" else r.status for r in res.runs))
            else:
                text = NA_TEXT.get(way, "n/a") if run.status == "n/a" else f"FAILED ({run.reason[:100]})"
                row = [inp.name, way, text]
                if run.reason:
                    notes.append(f"{inp.name} / {way}: {run.reason}")
            rows.append(row)
        counts = {r.best.tiles for r in results.get(inp.name, {}).values() if r.best.status == "ok"}
        if len(counts) > 1:
            notes.append(f"{inp.name}: the ways wrote different tile counts {sorted(counts)}")
    table = format_table(rows, right={2, 3, 4, 5, 6, 7, 8})
    return table + ("\n" + "\n".join(f"  note: {n}" for n in notes) if notes else "")


def checks_table(checks: list[Check]) -> str:
    rows = [["input", "check", "value", "target", "result", "note"]]
    for c in checks:
        if c.value is None:
            value = "-"
        elif c.name.endswith("MiB"):
            value = f"{c.value:.0f}"
        else:
            value = f"{c.value:.2f}x"
        result = "n/a" if c.passed is None else ("PASS" if c.passed else "FAIL")
        rows.append([c.input, c.name, value, c.target, result, c.note])
    return format_table(rows, right={2})


def versions() -> dict[str, str]:
    found = {}
    for dist in ("tilewright", "pyvips", "pyvips-binary", "openslide-python", "openslide-bin", "pillow"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "-"
    return found


# -- main --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="generate a 10k x 10k image instead of 30k x 30k")
    parser.add_argument("--inputs", help="comma-separated: svs-jpeg, svs-jp2k, ndpi, tiff30k, tiff10k, or paths")
    parser.add_argument("--ways", default=",".join(WAYS), help="comma-separated subset of: " + ", ".join(WAYS))
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each way per input, interleaved; the fastest is reported (default 3)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--workdir", type=Path, help="where temporary files go (default: the system temp dir)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before one child is killed")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any target is missed")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=120,
        metavar="S",
        help="before each run wait (at most 30 s a time, S s in all) for other processes to go quiet; 0: never wait",
    )
    parser.add_argument("--child", nargs=2, metavar=("WAY", "SRC"), help=argparse.SUPPRESS)
    parser.add_argument("child_out", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--access", default="random", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        way, src = args.child
        if way == "pyvips":
            return child_pyvips(src, args.child_out, args.access)
        if way == "dzg":
            return child_dzg(src, args.child_out)
        if way == "generate":
            return child_generate(int(src), args.child_out)
        raise SystemExit(f"unknown child {way}")

    ways = [w for w in (s.strip() for s in args.ways.split(",")) if w]
    if unknown := [w for w in ways if w not in WAYS]:
        raise SystemExit(f"unknown way(s) {unknown}; choose from {', '.join(WAYS)}")
    inputs = choose_inputs(args.inputs, args.quick)
    missing = [str(i.path) for i in inputs if i.path is not None and not i.path.is_file()]
    if missing:
        raise SystemExit(f"missing input(s): {', '.join(missing)} (set TILEWRIGHT_TESTDATA?)")

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tilewright-bench-", dir=args.workdir))
    print(
        f"tilewright convert benchmark: tile {TILE_SIZE}, overlap {OVERLAP}, Q{QUALITY}; "
        f"{os.cpu_count()} cores; " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        flush=True,
    )
    results: dict[str, dict[str, Result]] = {}
    checks: list[Check] = []
    generated: dict[str, float] = {}
    waited = 0.0  # seconds spent waiting for other processes to go quiet
    began = time.perf_counter()
    try:
        for inp in inputs:
            src = inp.path
            if src is None:
                src = work / f"{inp.name}.tif"
                print(f"generating {inp.size} x {inp.size} tiled JPEG pyramidal TIFF ...", end=" ", flush=True)
                gen = run_child(
                    [sys.executable, str(Path(__file__).resolve()), "--child", "generate", str(inp.size), str(src)],
                    work / "log-generate",
                    args.timeout,
                )
                if gen.code != 0:
                    raise SystemExit(f"cannot generate the test image: {_tail(gen.stderr)}")
                generated[inp.name] = gen.wall
                print(f"{gen.wall:.1f} s, {src.stat().st_size / 2**20:.0f} MiB", flush=True)
            warm_cache(src)
            access = "random" if is_tiled_tiff(src) else "sequential"
            repeat = args.repeat or 3
            per_input: dict[str, Result] = {w: Result(inp.name, w) for w in ways}
            for n in range(repeat):  # interleaved, so that drift in the machine's speed hits every way alike
                for way in ways:
                    if per_input[way].runs and per_input[way].runs[0].status == "n/a":
                        continue
                    if waited < args.wait_idle:
                        t0 = time.monotonic()
                        wait_until_quiet(min(30.0, args.wait_idle - waited))
                        waited += time.monotonic() - t0
                    run = measure(way, src, work, access, args.timeout)
                    per_input[way].runs.append(run)
                    shown = f"{run.wall:.2f} s" if run.status == "ok" else run.status
                    print(
                        f"  {inp.name:<10} {way:<10} run {n + 1}/{repeat}: {shown}"
                        f"{f'  (other processes used {run.other:.2f} cores meanwhile)' if run.other > 0.1 else ''}",
                        flush=True,
                    )
            results[inp.name] = per_input
            checks += compute_checks(inp, per_input)
            if inp.path is None:
                src.unlink(missing_ok=True)
        elapsed = time.perf_counter() - began
        print()
        print(
            results_table(inputs, results, max((len(r.runs) for d in results.values() for r in d.values()), default=1))
        )
        print()
        print(checks_table(checks))
        print()
        print(
            "wall s: the whole child process, interpreter start-up and imports included. conv s: the conversion\n"
            "as the child timed it. CPU s: user + system of the child and its children. peak RSS: ru_maxrss, the\n"
            f"largest single process (DZG: a parent and {DZG_WORKERS} workers). other load: cores' worth of CPU other\n"
            "processes used during the run (above ~0.2 the timings are disturbed). The fastest run is shown.\n"
            f"Benchmark took {elapsed:.0f} s."
        )
        if args.json:
            payload = {
                "parameters": {
                    "tile_size": TILE_SIZE,
                    "overlap": OVERLAP,
                    "quality": QUALITY,
                    "dzg_workers": DZG_WORKERS,
                },
                "machine": {
                    "cores": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "versions": versions(),
                },
                "inputs": [
                    {
                        "name": i.name,
                        "path": str(i.path) if i.path else None,
                        "kind": i.kind,
                        "size": i.size or None,
                        "generate_seconds": generated.get(i.name),
                    }
                    for i in inputs
                ],
                "results": [
                    {
                        "input": r.input,
                        "way": r.way,
                        "best": {**asdict(r.best), "tiles_per_s": r.best.tiles_per_s},
                        "runs": [asdict(x) for x in r.runs],
                    }
                    for d in results.values()
                    for r in d.values()
                ],
                "checks": [asdict(c) for c in checks],
                "seconds": round(elapsed, 1),
            }
            args.json.write_text(json.dumps(payload, indent=2))
            print(f"results written to {args.json}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if args.strict and any(c.passed is False for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
