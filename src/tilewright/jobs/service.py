"""Submitting jobs: the one function the HTTP API and the CLI both call."""

from __future__ import annotations

from typing import Any

from tilewright.config import Settings
from tilewright.jobs import store
from tilewright.jobs.tasks import prepare


def submit_job(
    settings: Settings, executor: Any, kind: str, params: dict[str, Any], key: str | None = None
) -> tuple[dict, bool]:
    """Check, record and enqueue a job; the same key again returns the existing job. -> (job, created)."""
    clean, default_key = prepare(kind, params, settings)
    job, created = store.submit(
        settings, kind, clean, key or default_key, executor=getattr(executor, "name", "embedded")
    )
    if created and executor is not None:
        executor.submit(job["id"])
    return job, created
