"""`tilewright watch URL`: for stores that send no events, poll a listing and submit a job per new blob version.

The cursor (`DATA_DIR/watch/<hash of the URL>.json`, or `--cursor`) remembers each key's etag, written
atomically after every poll, so a restarted watcher only submits what changed. Submission goes through the
same job key as events, so a blob seen by both a watcher and Event Grid is still one job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tilewright.config import Settings
from tilewright.errors import TilewrightError
from tilewright.events.filters import accept
from tilewright.events.submit import submit_accepted
from tilewright.storage import StorageError, open_url
from tilewright.storage.local import LocalStorage

log = logging.getLogger(__name__)


def cursor_path(url: str, settings: Settings) -> Path:
    return settings.data_dir.resolve() / "watch" / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}.json"


def _load(path: Path, url: str) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("seen", {}) if isinstance(data, dict) and data.get("url") == url else {}


def _save(path: Path, url: str, seen: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    temp.write_text(json.dumps({"url": url, "updated": time.time(), "seen": seen}))
    os.replace(temp, path)


def poll(
    url: str, settings: Settings, executor: Any, seen: dict[str, str], echo: Callable[[str], None] = lambda _line: None
) -> dict[str, int]:
    """One listing: submit a job for each blob whose etag is new; updates `seen` in place.

    One store serves the whole listing and each blob is filtered once, here (`submit_accepted` does not filter)."""
    store, prefix = open_url(url, settings)
    counts = {"listed": 0, "submitted": 0, "duplicate": 0, "ignored": 0, "failed": 0}
    local = isinstance(store, LocalStorage)
    for blob in store.list(prefix):
        counts["listed"] += 1
        marker = blob.etag or blob.version
        if seen.get(blob.key) == marker:
            continue
        ok, reason = accept(blob.key, settings, local=local)
        if not ok:
            counts["ignored"] += 1
            seen[blob.key] = marker
            continue
        try:
            outcome = submit_accepted(
                settings, executor, store, blob.key, etag=blob.etag, version=blob.version, origin="watch"
            )
        except TilewrightError as exc:
            counts["failed"] += 1
            echo(f"{store.url(blob.key)}: {exc}")
            continue  # not marked seen: tried again next poll
        counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
        seen[blob.key] = marker
        if outcome["status"] == "submitted":
            echo(f"{outcome['job']}  {outcome['url']}  (etag {outcome['etag']})")
    return counts


def watch(
    url: str,
    settings: Settings,
    executor: Any = None,
    *,
    once: bool = False,
    interval: float | None = None,
    cursor: Path | None = None,
    stop: threading.Event | None = None,
    echo: Callable[[str], None] = lambda _line: None,
) -> dict[str, int]:
    """Poll until `stop` is set (or once); returns the totals."""
    store, prefix = open_url(url, settings)  # bad URLs fail now, not in the loop
    canonical = store.url(prefix)
    path = cursor or cursor_path(canonical, settings)
    seen = _load(path, canonical)
    totals: dict[str, int] = {}
    stop = stop or threading.Event()
    while True:
        try:
            counts = poll(url, settings, executor, seen, echo)
            _save(path, canonical, seen)
            for name, value in counts.items():
                totals[name] = totals.get(name, 0) + value
        except StorageError as exc:  # the store is down: say so and try again next time
            if once:
                raise
            log.warning("watch %s: %s", canonical, exc)
            echo(f"warning: {exc}")
        if once or stop.wait(interval or settings.watch_interval_seconds):
            return totals
