"""Caches of the tile server: encoded tiles (in-process LRU, or Redis) and open slide handles.

`TileCache` keeps encoded tiles by key. With `TILEWRIGHT_CACHE_URL` set it uses Redis
(shared by every server process); if Redis cannot be reached it logs one warning,
keeps tiles in the in-process LRU instead, and tries Redis again every
`retry_seconds`: once it answers the cache is back on Redis (and says so once).

`SlideHandles` keeps readers open (keyed by path, size and modification time, so a
changed file is reopened), closes the least recently used beyond `max_open`, and
never closes a reader another thread is still rendering from.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import pyvips

from tilewright.errors import one_line
from tilewright.formats.base import SlideReader
from tilewright.logs import redact

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

SourceKey = tuple[str, int, int]
"""(path, size, modification time in ns) of a source file, from `SlideHandles.key_of`: a changed file is a new key."""
V = TypeVar("V")


class LruBytes:
    """A thread-safe LRU of bytes values, bounded by their total size."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes // 4 or self.max_bytes == 0:
            return  # one huge region must not flush every tile
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._data[key] = value
            self._size += len(value)
            while self._size > self.max_bytes and self._data:
                _, dropped = self._data.popitem(last=False)
                self._size -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._size = 0

    def __len__(self) -> int:
        return len(self._data)

    @property
    def size(self) -> int:
        return self._size


class TileCache:
    """Encoded tiles by key: Redis when configured and reachable, the in-process LRU otherwise."""

    def __init__(
        self,
        max_bytes: int,
        redis_url: str = "",
        ttl_seconds: int = 86400,
        retry_seconds: float = 5.0,
        prefix: str = "tilewright:tile:",
    ) -> None:
        self.local = LruBytes(max_bytes)
        self.redis_url = redis_url
        self.ttl_seconds = int(ttl_seconds)
        self.retry_seconds = retry_seconds
        self.prefix = prefix
        self.hits = self.misses = 0
        self._client: redis.Redis | None = None
        self._down_until = 0.0
        self._down = False
        self._state_lock = threading.Lock()
        if redis_url:
            # only with TILEWRIGHT_CACHE_URL: importing redis costs ~130 ms of server start-up
            import redis
            from redis.backoff import NoBackoff  # (redis: as above)
            from redis.retry import Retry  # (redis: as above)

            self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
            # short timeouts and no retries: a lost Redis must cost a tile well under a second, once
            self._client = redis.Redis.from_url(
                redis_url,
                socket_connect_timeout=0.5,
                socket_timeout=0.5,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )

    # -- state -----------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        if self._client is None:
            return "memory"
        return "memory (redis unreachable)" if self._down else "redis"

    def _redis(self) -> redis.Redis | None:
        """The Redis client if it is to be used now; after an outage, one ping decides whether it is back."""
        if self._client is None:
            return None
        if not self._down:
            return self._client
        if time.monotonic() < self._down_until:
            return None
        with self._state_lock:
            if not self._down:
                return self._client
            if time.monotonic() < self._down_until:
                return None
            try:
                self._client.ping()
            except self._errors:
                self._down_until = time.monotonic() + self.retry_seconds
                return None
            self._down = False
            log.warning("tile cache: Redis at %s answers again; caching there again", redact(self.redis_url))
            return self._client

    def _lost(self, exc: BaseException) -> None:
        with self._state_lock:
            if not self._down:
                log.warning(
                    "tile cache: Redis at %s cannot be reached (%s); tiles are cached in memory "
                    "until it answers again (retried every %g s)",
                    redact(self.redis_url),
                    one_line(exc, 200),
                    self.retry_seconds,
                )
            self._down = True
            self._down_until = time.monotonic() + self.retry_seconds

    # -- use ---------------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        client = self._redis()
        value: bytes | None = None
        if client is not None:
            try:
                value = cast(bytes | None, client.get(self.prefix + key))  # bytes: the client does not decode
            except self._errors as exc:
                self._lost(exc)
                value = self.local.get(key)
        else:
            value = self.local.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: str, value: bytes) -> None:
        client = self._redis()
        if client is not None:
            try:
                client.set(self.prefix + key, value, ex=self.ttl_seconds or None)
                return
            except self._errors as exc:
                self._lost(exc)
        self.local.put(key, value)

    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "hits": self.hits,
            "misses": self.misses,
            "memory_entries": len(self.local),
            "memory_bytes": self.local.size,
            "memory_max_bytes": self.local.max_bytes,
        }

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001
                pass


class Handle:
    """An open reader, shared by the threads rendering from it."""

    def __init__(self, key: SourceKey, reader: SlideReader) -> None:
        self.key = key
        self.reader = reader
        self.users = 0
        self.evicted = False
        self.broken = False
        self._lock = threading.Lock()

    def level_image(self, level: int) -> pyvips.Image:
        with self._lock:  # the reader caches one lazy image per level; build it once
            return self.reader.level_image(level)


class SlideHandles:
    """An LRU of open readers; `with handles.open(path) as handle:` borrows one."""

    def __init__(self, opener: Callable[[Path], SlideReader], max_open: int = 32) -> None:
        self.opener = opener
        self.max_open = max(1, max_open)
        self._open: OrderedDict[SourceKey, Handle] = OrderedDict()
        self._lock = threading.Lock()
        self._opening: dict[SourceKey, threading.Lock] = {}
        self.opened = 0

    @staticmethod
    def key_of(path: Path) -> SourceKey:
        """The identity of the source file at `path` (OSError if it is gone): what an open handle is kept by."""
        stat = path.stat()
        return str(path), stat.st_size, stat.st_mtime_ns

    @contextmanager
    def open(self, path: Path, key: SourceKey | None = None) -> Iterator[Handle]:
        key = key or self.key_of(path)
        handle = self._acquire(path, key)
        try:
            yield handle
        finally:
            self._release(handle)

    def _borrow_open(self, key: SourceKey) -> Handle | None:
        """The open handle of `key`, counted as in use; None if it is not open. Call with `_lock` held."""
        handle = self._open.get(key)
        if handle is not None:
            self._open.move_to_end(key)
            handle.users += 1
        return handle

    def _acquire(self, path: Path, key: SourceKey) -> Handle:
        with self._lock:
            handle = self._borrow_open(key)
            if handle is not None:
                return handle
            opening = self._opening.setdefault(key, threading.Lock())
        with opening:  # one thread opens a given file; the others wait for it
            with self._lock:
                handle = self._borrow_open(key)
                if handle is not None:
                    return handle
            reader = self.opener(path)
            self.opened += 1
            handle = Handle(key, reader)
            handle.users = 1
            closing: list[Handle] = []
            with self._lock:
                self._open[key] = handle
                self._opening.pop(key, None)
                while len(self._open) > self.max_open:
                    _, old = self._open.popitem(last=False)
                    old.evicted = True
                    if old.users == 0:
                        closing.append(old)
            for old in closing:
                _close(old)
            return handle

    def _release(self, handle: Handle) -> None:
        close = False
        with self._lock:
            handle.users -= 1
            if handle.broken and not handle.evicted:
                handle.evicted = True
                if self._open.get(handle.key) is handle:
                    del self._open[handle.key]
            close = handle.evicted and handle.users == 0
        if close:
            _close(handle)

    def discard(self, handle: Handle) -> None:
        """Forget a handle whose reader failed (a bridged read error sticks): the next request reopens."""
        handle.broken = True

    def clear(self) -> None:
        with self._lock:
            handles = list(self._open.values())
            self._open.clear()
            for handle in handles:
                handle.evicted = True
            idle = [h for h in handles if h.users == 0]
        for handle in idle:
            _close(handle)

    def __len__(self) -> int:
        return len(self._open)


def _close(handle: Handle) -> None:
    try:
        handle.reader.close()
    except Exception as exc:  # noqa: BLE001
        log.debug("closing %s: %s", handle.key, exc)


class TtlCache(Generic[V]):
    """A small dict of values that expire after `ttl` seconds (image records by id)."""

    def __init__(self, ttl: float, max_entries: int = 10000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            item = self._data.get(key)
            if item is None or item[0] < time.monotonic():
                return None
            return item[1]

    def put(self, key: str, value: V) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + self.ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def pop(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)
