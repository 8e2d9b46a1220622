"""Shared fixtures: where the real test images live, and generated images.

Real files come from `../shared/testdata/` beside the repo (see its SOURCES.md);
`TILEWRIGHT_TESTDATA` points elsewhere. A test names the exact file it needs with
`testdata("svs/cmu-1-small-region.svs")`, and fails (not skips) if it is missing:
a missing fixture is a broken checkout, not an optional feature.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# the fixtures of the real services (redis-server, Azurite, moto, PostgreSQL, a slow TIFF), registered once here so
# that a test names them as arguments and never imports them
pytest_plugins = ["services", "rabbit_services", "pg_services", "azure_services", "browser"]

REPO = Path(__file__).resolve().parent.parent
TESTDATA = Path(os.environ.get("TILEWRIGHT_TESTDATA", REPO.parent / "shared" / "testdata"))


def testdata_path(relative: str) -> Path:
    path = TESTDATA / relative
    if not path.exists():
        raise FileNotFoundError(f"test image {relative} not found under {TESTDATA} (see shared/testdata/SOURCES.md)")
    return path


@pytest.fixture(scope="session")
def testdata():
    """testdata('svs/cmu-1-small-region.svs') -> Path of a real file in shared/testdata."""
    return testdata_path


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch, tmp_path_factory):
    """Every test starts from default settings, whatever the developer's environment says."""
    for name in list(os.environ):
        if name.startswith("TILEWRIGHT_") and name != "TILEWRIGHT_TESTDATA":
            monkeypatch.delenv(name)
    from tilewright.config import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def big_pyramid(tmp_path_factory) -> Path:
    """A generated 6000 x 5000 tiled JPEG pyramidal TIFF (made in the session, never committed)."""
    import pyvips

    path = tmp_path_factory.mktemp("generated") / "pyramid.tiff"
    x = pyvips.Image.xyz(6000, 5000)
    image = ((x[0] * 7 + x[1] * 3) % 256).cast("uchar")
    rgb = image.bandjoin([(x[1] % 256).cast("uchar"), ((x[0] // 4) % 256).cast("uchar")]).copy(interpretation="srgb")
    rgb.tiffsave(str(path), tile=True, pyramid=True, compression="jpeg", Q=90, tile_width=256, tile_height=256)
    return path
