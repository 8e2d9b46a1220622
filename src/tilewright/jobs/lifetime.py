"""A worker process's life is tied to its parent's: what both executors' pool processes (the embedded
pool and Celery's prefork children) do first."""

from __future__ import annotations

import ctypes
import signal
import sys


def set_pdeathsig() -> None:
    """Linux: die with the parent, so a killed server leaves no orphan converting on its own."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:  # pragma: no cover
            pass
