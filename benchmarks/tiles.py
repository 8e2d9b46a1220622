"""Tile-serving benchmark: tilewright vs IIPImage (iipsrv behind lighttpd) vs OpenSlide's deep-zoom server.

    .venv/bin/python benchmarks/tiles.py [--seconds 10] [--clients 1 8 32] [--size 16384]

All three serve the same generated pyramidal TIFF (JPEG tiles, 256 px; made once from the
real CMU-1-Small-Region slide repeated, so tiles hold real tissue). Load comes from `wrk`
(Debian package) on loopback, with a Lua script that picks tile URLs across every level:

* cold: the server has just been started (empty caches) and every request is a tile not yet
  asked for (a shuffled list walked in order);
* warm: 500 tiles fetched once and then under the same load for 4 s beforehand (so that every
  server process has them cached), then requested at random.

IIPImage and tilewright answer the same IIIF tile URLs (`region/w,/0/default.jpg`);
OpenSlide's example server (DeepZoomGenerator behind Flask, threaded, as in
openslide-python's examples/deepzoom/deepzoom_server.py) and tilewright answer the same
Deep Zoom URLs, in two geometries: 254 px tiles with overlap 1 (the Deep Zoom default, and
OpenSlide's; tilewright with TILEWRIGHT_TILES_FOLLOW_SOURCE=false) and 256 px with no
overlap (the TIFF's own grid, which tilewright's dynamic .dzi advertises by default, and
DeepZoomGenerator(tile_size=256, overlap=0)). tilewright runs as uvicorn with 2 worker
processes (one per core), its default in-process tile cache in each.

Needs: apt-get install -y iipimage-server lighttpd wrk; pip install flask (only for the
OpenSlide server). Prints a Markdown table (and writes benchmarks/tiles-results.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO.parent / "shared" / "testdata" / "svs" / "cmu-1-small-region.svs"
IIPSRV = "/usr/lib/iipimage-server/iipsrv.fcgi"
TILE = 256
DZ_GEOMETRIES = {"254/1": (254, 1), "256/0": (256, 0)}

OPENSLIDE_APP = """
import sys
from io import BytesIO
from flask import Flask, abort, make_response
import openslide
from openslide.deepzoom import DeepZoomGenerator

app = Flask(__name__)
slide = openslide.OpenSlide(sys.argv[1])
dz = DeepZoomGenerator(slide, tile_size=int(sys.argv[3]), overlap=int(sys.argv[4]), limit_bounds=False)

@app.route("/slide.dzi")
def dzi():
    return make_response(dz.get_dzi("jpeg"), 200, {"Content-Type": "application/xml"})

@app.route("/slide_files/<int:level>/<int:col>_<int:row>.<fmt>")
def tile(level, col, row, fmt):
    try:
        image = dz.get_tile(level, (col, row))
    except ValueError:
        abort(404)
    buf = BytesIO()
    image.save(buf, "jpeg", quality=85)
    return make_response(buf.getvalue(), 200, {"Content-Type": "image/jpeg"})

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
"""

LUA = """
local paths = {}
local mode = "%(mode)s"
for line in io.lines("%(urls)s") do paths[#paths + 1] = line end
local counter = 0
local thread_id = 0
local threads = 0
function setup(thread)
  thread:set("thread_id", threads)
  threads = threads + 1
end
function init(args)
  math.randomseed(1234 + thread_id)
  counter = thread_id * 100000
end
function request()
  local path
  if mode == "cold" then
    counter = counter + 1
    path = paths[(counter %% #paths) + 1]
  else
    path = paths[math.random(#paths)]
  end
  return wrk.format("GET", path)
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %%d, \\"seconds\\": %%f, \\"p50\\": %%f, \\"p99\\": %%f, " ..
    "\\"status\\": %%d, \\"connect\\": %%d, \\"read\\": %%d, \\"write\\": %%d, \\"timeout\\": %%d}\\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def make_tiff(path: Path, size: int) -> tuple[int, int]:
    import pyvips

    if not path.exists():
        base = pyvips.Image.new_from_file(str(SAMPLE))[0:3]
        image = base.replicate(math.ceil(size / base.width), math.ceil(size / base.height)).crop(0, 0, size, size)
        image.tiffsave(
            str(path),
            tile=True,
            pyramid=True,
            compression="jpeg",
            Q=85,
            tile_width=TILE,
            tile_height=TILE,
            bigtiff=False,
        )
    image = pyvips.Image.new_from_file(str(path))
    return image.width, image.height


# -- URL lists --------------------------------------------------------------------------------------------
def iiif_tiles(width: int, height: int) -> list[str]:
    """IIIF tile requests on the TIFF's own 256-px grid at every power-of-two scale."""
    out = []
    scale = 1
    while True:
        step = TILE * scale
        for y in range(0, height, step):
            for x in range(0, width, step):
                w, h = min(step, width - x), min(step, height - y)
                out.append(f"{x},{y},{w},{h}/{math.ceil(w / scale)},/0/default.jpg")
        if max(width, height) <= step:
            break
        scale *= 2
    return out


def dz_tiles(width: int, height: int, tile: int, overlap: int) -> list[str]:
    out = []
    top = math.ceil(math.log2(max(width, height)))
    for level in range(top + 1):
        s = 2 ** (top - level)
        lw, lh = math.ceil(width / s), math.ceil(height / s)
        for row in range(math.ceil(lh / tile)):
            for col in range(math.ceil(lw / tile)):
                out.append(f"{level}/{col}_{row}.jpeg")
    return out


def pick(tiles: list[str], n: int, seed: int) -> list[str]:
    """n tiles spread over the levels (a viewer asks for every level, not only the base)."""
    rng = random.Random(seed)
    tiles = list(tiles)
    rng.shuffle(tiles)
    return tiles[:n]


# -- servers ---------------------------------------------------------------------------------------------------
class Server:
    name = ""

    def __init__(self, work: Path, tiff: Path) -> None:
        self.work, self.tiff, self.port = work, tiff, free_port()
        self.proc: subprocess.Popen | None = None
        self.log = open(work / f"{self.name.split()[0]}.log", "ab")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)
        self.proc = None

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            args,
            env={**os.environ, **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.work,
        )


class Tilewright(Server):
    name = "tilewright"

    def __init__(self, work: Path, tiff: Path, workers: int, geometry: str = "256/0") -> None:
        self.name = f"tilewright ({workers} worker{'s' if workers > 1 else ''})"
        super().__init__(work, tiff)
        self.workers = workers
        self.data = work / "tw-data"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TILEWRIGHT_")}
        self.env.update(TILEWRIGHT_DATA_DIR=str(self.data), TILEWRIGHT_LOG_LEVEL="WARNING", TILEWRIGHT_CONCURRENCY="1")
        if geometry == "254/1":  # the configured Deep Zoom geometry instead of the TIFF's grid
            self.env.update(
                TILEWRIGHT_TILES_FOLLOW_SOURCE="false", TILEWRIGHT_DZI_TILE_SIZE="254", TILEWRIGHT_DZI_OVERLAP="1"
            )
        self.image_id = "bench"
        self._register()

    def _register(self) -> None:
        from tilewright.config import Settings
        from tilewright.db import init_db, session_scope
        from tilewright.jobs.models import Image

        settings = Settings(data_dir=self.data)
        init_db(settings)
        with session_scope(settings) as session:
            if session.get(Image, self.image_id) is None:
                session.add(
                    Image(
                        id=self.image_id,
                        collection="bench",
                        filename=self.tiff.name,
                        path=str(self.tiff),
                        size=self.tiff.stat().st_size,
                        sha256="0" * 64,
                        format="tiff",
                        kind="tiff",
                    )
                )

    def start(self) -> None:
        self._spawn(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "tilewright.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            self.env,
        )
        wait_http(f"http://127.0.0.1:{self.port}/healthz")

    def iiif(self, tile: str) -> str:
        return f"/iiif/3/{self.image_id}/{tile}"

    def dz(self, tile: str) -> str:
        return f"/images/{self.image_id}_files/{tile}"


class IIPImage(Server):
    name = "IIPImage"

    def start(self) -> None:
        conf = self.work / "lighttpd.conf"
        conf.write_text(
            textwrap.dedent(f'''
            server.modules = ("mod_fastcgi")
            server.document-root = "{self.work}"
            server.bind = "127.0.0.1"
            server.port = {self.port}
            server.errorlog = "{self.work}/lighttpd-error.log"
            server.max-connections = 1024
            fastcgi.server = ( "/fcgi-bin/iipsrv.fcgi" => ((
                "bin-path" => "{IIPSRV}",
                "socket" => "{self.work}/iipsrv.sock",
                "check-local" => "disable",
                "min-procs" => 2, "max-procs" => 2,
                "bin-environment" => (
                    "LOGFILE" => "{self.work}/iipsrv.log", "VERBOSITY" => "0",
                    "FILESYSTEM_PREFIX" => "{self.work}/", "MAX_IMAGE_CACHE_SIZE" => "256",
                    "JPEG_QUALITY" => "85", "MAX_CVT" => "16384", "CORS" => "*"
                )
            )) )
        ''')
        )
        self._spawn(["lighttpd", "-D", "-f", str(conf)])
        wait_http(f"http://127.0.0.1:{self.port}" + self.iiif("0,0,256,256/256,/0/default.jpg"))

    def iiif(self, tile: str) -> str:
        return f"/fcgi-bin/iipsrv.fcgi?IIIF={self.tiff.name}/{tile}"


class OpenSlideFlask(Server):
    name = "OpenSlide DeepZoomGenerator + Flask"

    def __init__(self, work: Path, tiff: Path, geometry: str = "254/1") -> None:
        super().__init__(work, tiff)
        self.geometry = DZ_GEOMETRIES[geometry]

    def start(self) -> None:
        script = self.work / "deepzoom_server.py"
        script.write_text(OPENSLIDE_APP)
        self._spawn([sys.executable, str(script), str(self.tiff), str(self.port), *map(str, self.geometry)])
        wait_http(f"http://127.0.0.1:{self.port}/slide.dzi")

    def dz(self, tile: str) -> str:
        return f"/slide_files/{tile}"


# -- load ---------------------------------------------------------------------------------------------------
def wrk(server: Server, paths: list[str], mode: str, clients: int, seconds: float, work: Path) -> dict:
    urls = work / f"urls-{mode}.txt"
    urls.write_text("\n".join(paths) + "\n")
    script = work / f"bench-{mode}.lua"
    script.write_text(LUA % {"mode": mode, "urls": urls})
    threads = min(clients, 2)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(clients),
            "-d",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{server.port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"^JSON (.*)$", out, re.M)
    data = json.loads(match.group(1))
    errors = data["status"] + data["connect"] + data["read"] + data["write"] + data["timeout"]
    return {
        "rps": data["requests"] / data["seconds"],
        "p50": data["p50"],
        "p99": data["p99"],
        "errors": errors,
        "requests": data["requests"],
    }


def warm_up(server: Server, paths: list[str]) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=60) as client:
        for path in paths:
            response = client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"{server.name}: {path} -> {response.status_code} {response.text[:200]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--cold-seconds", type=float, default=5)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--size", type=int, default=16384, help="side of the generated pyramidal TIFF")
    parser.add_argument("--only", nargs="*", default=["tilewright", "iipimage", "openslide"])
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes of tilewright")
    parser.add_argument(
        "--dz",
        nargs="*",
        default=list(DZ_GEOMETRIES),
        choices=list(DZ_GEOMETRIES),
        help="Deep Zoom geometries (tile/overlap) to run",
    )
    args = parser.parse_args()
    for tool in ("wrk", "lighttpd"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install -y iipimage-server lighttpd wrk")
    work = Path(tempfile.mkdtemp(prefix="tw-bench-tiles-"))
    cache_dir = Path(tempfile.gettempdir()) / "tw-bench-tiles-cache"
    cache_dir.mkdir(exist_ok=True)
    tiff = cache_dir / f"bench-{args.size}.tif"
    width, height = make_tiff(tiff, args.size)
    shutil.copyfile(tiff, work / tiff.name)  # iipsrv reads from its FILESYSTEM_PREFIX
    tiff = work / tiff.name
    iiif_all = iiif_tiles(width, height)
    dz_all = {name: dz_tiles(width, height, *geometry) for name, geometry in DZ_GEOMETRIES.items()}
    print(
        f"image {width}x{height}: {len(iiif_all)} IIIF tiles, "
        f"{', '.join(f'{len(t)} Deep Zoom {g} tiles' for g, t in dz_all.items())}; work in {work}",
        flush=True,
    )

    runs: list[tuple[Server, str, callable, list[str]]] = []
    if "tilewright" in args.only:
        tw = Tilewright(work, tiff, args.workers)
        runs.append((tw, "IIIF", tw.iiif, iiif_all))
        for geometry in args.dz:
            server = Tilewright(work, tiff, args.workers, geometry)
            runs.append((server, f"Deep Zoom {geometry}", server.dz, dz_all[geometry]))
    if "iipimage" in args.only:
        iip = IIPImage(work, tiff)
        runs.append((iip, "IIIF", iip.iiif, iiif_all))
    if "openslide" in args.only:
        for geometry in args.dz:
            osd = OpenSlideFlask(work, tiff, geometry)
            runs.append((osd, f"Deep Zoom {geometry}", osd.dz, dz_all[geometry]))

    rows = []
    for server, api, url, tiles in runs:
        for clients in args.clients:
            for mode in ("cold", "warm"):
                server.start()
                try:
                    if mode == "cold":
                        seed = clients * 7 + (1 if api == "IIIF" else 2)
                        paths = [url(t) for t in pick(tiles, len(tiles), seed)]
                        result = wrk(server, paths, "cold", clients, args.cold_seconds, work)
                    else:
                        paths = [url(t) for t in pick(tiles, 500, 99)]
                        warm_up(server, paths)  # every tile once, then the same load for a while: every
                        wrk(server, paths, "warm", clients, 4, work)  # worker process has them cached
                        result = wrk(server, paths, "warm", clients, args.seconds, work)
                finally:
                    server.stop()
                row = {"server": server.name, "api": api, "clients": clients, "cache": mode, **result}
                rows.append(row)
                print(
                    f"{server.name:38} {api:15} {clients:3} {mode:4}  {result['rps']:8.1f} req/s  "
                    f"p50 {result['p50']:7.1f} ms  p99 {result['p99']:7.1f} ms  errors {result['errors']}",
                    flush=True,
                )

    lines = [
        "| server | API | clients | cache | requests/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['server']} | {r['api']} | {r['clients']} | {r['cache']} | {r['rps']:.0f} | "
            f"{r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} |"
        )
    table = "\n".join(lines)
    print()
    print(table)
    (REPO / "benchmarks" / "tiles-results.md").write_text(
        f"Image {width}x{height}, JPEG tiles; {os.cpu_count()} cores; command: "
        f"`{' '.join([Path(sys.executable).name, *sys.argv])}`\n\n{table}\n"
    )


if __name__ == "__main__":
    main()
