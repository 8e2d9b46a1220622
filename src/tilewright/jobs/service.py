"""Submitting jobs: the one function the HTTP API, the CLI and the event sources call."""

from __future__ import annotations

from typing import Any

from tilewright.config import Settings
from tilewright.jobs import store
from tilewright.jobs.executors import Executor
from tilewright.jobs.registry import prepare


def submit_job(
    settings: Settings, executor: Executor | None, kind: str, params: dict[str, Any], key: str | None = None
) -> tuple[dict[str, Any], bool]:
    """Check, record and enqueue a job; the same key again returns the existing job. -> (job, created)."""
    clean, default_key = prepare(kind, params, settings)
    job, created = store.submit(
        settings, kind, clean, key or default_key, executor=getattr(executor, "name", "embedded")
    )
    if created and executor is not None:
        executor.submit(job["id"])
    return job, created
