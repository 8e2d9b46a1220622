"""Many store requests at once: a pyramid's tens of thousands of tiles go up on `storage_connections` threads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

ProgressFn = Callable[[int, int], None]


def no_progress(done: int, total: int) -> None:
    """The default progress callback: says nothing."""
    return None


def run_parallel(calls: Sequence[Callable[[], object]], workers: int, progress: ProgressFn = no_progress) -> None:
    """Run calls on up to `workers` threads, reporting (done, total); the first failure stops the rest (calls not
    started yet are skipped) and is raised."""
    if not calls:
        return
    done = 0
    lock = threading.Lock()
    total = len(calls)
    stop = threading.Event()

    def run(call: Callable[[], object]) -> None:
        nonlocal done
        if stop.is_set():
            return
        call()
        with lock:
            done += 1
            count = done
        progress(count, total)

    with ThreadPoolExecutor(max_workers=min(workers, total), thread_name_prefix="tw-store") as pool:
        futures = [pool.submit(run, c) for c in calls]
        finished, _pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [error for f in finished if (error := f.exception()) is not None]
        if failed:
            stop.set()
            for future in futures:
                future.cancel()
            raise failed[0]
