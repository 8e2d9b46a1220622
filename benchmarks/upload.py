"""Upload throughput of a real Deep Zoom pyramid to Azurite (tiles/s) at 4, 16 and 32 connections.

    .venv/bin/python benchmarks/upload.py [SIZE]      # from the repository root; SIZE: slide side, default 6000

Converts a generated SIZE x SIZE pyramidal TIFF to DZI, starts its own Azurite (the test suite's
helper, so `make test` or `make azurite` must have installed it) and publishes the pyramid with
`TILEWRIGHT_STORAGE_CONNECTIONS` at each count: tiles, then markers, then the manifest, as a job does.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

# the test suite's helpers (Azurite, the generated slide) live in tests/
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from azure_services import Azurite
from services import make_slow_tiff
from tilewright.config import Settings
from tilewright.convert import convert
from tilewright.storage import open_url


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    work = Path(tempfile.mkdtemp(prefix="tw-bench-"))
    slide = make_slow_tiff(work / "slide.tiff", size=size)
    out = work / "out"
    out.mkdir()
    result = convert(slide, out / "slide", "dzi")
    files = sum(1 for p in out.rglob("*") if p.is_file())
    print(f"pyramid: {result.tiles} tiles, {files} files, {result.bytes / 2**20:.1f} MiB")
    server = Azurite(work)
    try:
        for connections in (4, 16, 32):
            settings = Settings(azure_connection_string=server.connection_string, storage_connections=connections)
            store, _ = open_url("az://bench", settings)
            started = time.perf_counter()
            store.publish_pyramid(out, f"bench/c{connections}/slide")
            seconds = time.perf_counter() - started
            print(f"connections={connections}: {files} files in {seconds:.1f} s = {files / seconds:.0f} tiles/s")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
