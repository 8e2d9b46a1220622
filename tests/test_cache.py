"""Tile cache (server/cache.py): the LRU, the slide-handle cache, and Redis on, off, unreachable and lost
mid-run (a real `redis-server` on a free loopback port, killed and restarted by the test)."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from fastapi.testclient import TestClient

from services import RedisServer, free_port
from test_tiles import add_image
from tilewright.config import Settings
from tilewright.server import create_app
from tilewright.server.cache import LruBytes, SlideHandles, TileCache

TILE = "/iiif/3/cmu/0,0,512,512/256,/0/default.jpg"


@pytest.fixture
def redis_proc(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


def make_client(tmp_path, testdata, **settings) -> tuple[TestClient, Settings]:
    config = Settings(data_dir=tmp_path / "data", **settings)
    client = TestClient(create_app(config))
    client.__enter__()
    add_image(config, "cmu", testdata("svs/cmu-1-small-region.svs"))
    return client, config


# -- the pieces -------------------------------------------------------------------------------------
def test_lru_is_bounded_by_bytes_and_keeps_recent_entries():
    lru = LruBytes(1000)
    for i in range(10):
        lru.put(f"k{i}", bytes(200))
        lru.get("k0")  # k0 stays recent
    assert lru.size <= 1000 and len(lru) == 5
    assert lru.get("k0") is not None and lru.get("k1") is None and lru.get("k9") is not None
    lru.put("huge", bytes(600))  # over a quarter of the cache: not kept
    assert lru.get("huge") is None


def test_memory_cache_without_redis():
    cache = TileCache(10_000)
    assert cache.backend == "memory" and cache.get("a") is None
    cache.put("a", b"xyz")
    assert cache.get("a") == b"xyz" and cache.stats()["hits"] == 1 and cache.stats()["misses"] == 1


class FakeReader:
    def __init__(self, path):
        self.path, self.closed = path, False

    def close(self):
        self.closed = True


def test_slide_handles_are_reused_evicted_and_never_closed_while_in_use(tmp_path):
    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.bin")
        files[-1].write_bytes(b"x" * (i + 1))
    handles = SlideHandles(FakeReader, max_open=2)
    with handles.open(files[0]) as first:
        with handles.open(files[0]) as again:
            assert again is first
        with handles.open(files[1]), handles.open(files[2]):
            pass
        assert first.evicted and not first.reader.closed  # still borrowed: not closed under the renderer
    assert first.reader.closed and handles.opened == 3 and len(handles) == 2
    files[2].write_bytes(b"changed content")  # a changed file is opened afresh
    with handles.open(files[2]) as fresh:
        assert fresh.reader is not None
    assert handles.opened == 4


def test_one_opener_per_file_under_concurrency(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"a")
    calls = []

    def slow_open(p):
        calls.append(p)
        time.sleep(0.2)
        return FakeReader(p)

    handles = SlideHandles(slow_open)

    def use():
        with handles.open(path):
            pass

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1


# -- Redis, for real ----------------------------------------------------------------------------------
def test_redis_cache_on(tmp_path, testdata, redis_proc):
    client, _ = make_client(tmp_path, testdata, cache_url=redis_proc.url)
    try:
        first = client.get(TILE)
        assert first.status_code == 200 and first.headers["x-tile-cache"] == "miss"
        keys = redis_proc.client().keys("tilewright:tile:*")
        assert len(keys) == 1 and redis_proc.client().get(keys[0]) == first.content
        assert 0 < redis_proc.client().ttl(keys[0]) <= 7 * 86400
        client.app.state.tiles.cache.local.clear()  # the hit must come from Redis
        second = client.get(TILE)
        assert second.headers["x-tile-cache"] == "hit" and second.content == first.content
        assert client.get("/tiles/cache").json()["backend"] == "redis"
    finally:
        client.__exit__(None, None, None)


def test_redis_cache_off_by_default(tmp_path, testdata, redis_proc):
    client, _ = make_client(tmp_path, testdata)
    try:
        assert client.get(TILE).headers["x-tile-cache"] == "miss"
        assert client.get(TILE).headers["x-tile-cache"] == "hit"
        assert client.get("/tiles/cache").json()["backend"] == "memory"
        assert redis_proc.client().dbsize() == 0
    finally:
        client.__exit__(None, None, None)


def test_redis_unreachable_at_start_warns_once_and_serves(tmp_path, testdata, caplog):
    caplog.set_level(logging.WARNING, logger="tilewright.server.cache")
    client, _ = make_client(tmp_path, testdata, cache_url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        started = time.monotonic()
        for size in (64, 128, 256, 64, 128):
            r = client.get(f"/iiif/3/cmu/0,0,512,512/{size},/0/default.jpg")
            assert r.status_code == 200
        assert time.monotonic() - started < 5
        assert client.get("/iiif/3/cmu/0,0,512,512/64,/0/default.jpg").headers["x-tile-cache"] == "hit"  # memory
        warnings = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
        assert len(warnings) == 1
        assert client.get("/tiles/cache").json()["backend"] == "memory (redis unreachable)"
    finally:
        client.__exit__(None, None, None)


def test_redis_lost_mid_run_and_back(tmp_path, testdata, redis_proc, caplog):
    caplog.set_level(logging.WARNING, logger="tilewright.server.cache")
    client, _ = make_client(tmp_path, testdata, cache_url=redis_proc.url)
    try:
        client.get("/tiles/cache")
        client.app.state.tiles.cache.retry_seconds = 0.5
        assert client.get(TILE).status_code == 200
        assert redis_proc.client().dbsize() == 1
        redis_proc.kill()
        started = time.monotonic()
        for level in range(13):  # every Deep Zoom level, served without Redis
            r = client.get(f"/images/cmu_files/{level}/0_0.jpeg")
            assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
        assert client.get(TILE).status_code == 200
        assert time.monotonic() - started < 10
        assert client.get("/tiles/cache").json()["backend"] == "memory (redis unreachable)"
        assert len([r for r in caplog.records if "cannot be reached" in r.getMessage()]) == 1
        redis_proc.start()  # back, same port, empty
        time.sleep(0.6)
        assert client.get("/images/cmu_files/11/1_1.jpeg").status_code == 200
        assert client.get("/tiles/cache").json()["backend"] == "redis"
        assert redis_proc.client().dbsize() == 1
        assert any("answers again" in r.getMessage() for r in caplog.records)
    finally:
        client.__exit__(None, None, None)
