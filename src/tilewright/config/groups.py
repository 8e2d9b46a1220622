"""The groups settings are declared in: each field names its own (`json_schema_extra=GROUP`), and
docs/configuration.md has one section per group, in this order (pure Python)."""

from __future__ import annotations

from pydantic.config import JsonDict

GROUP_TITLES: dict[str, str] = {}


def _group(title: str) -> JsonDict:
    key = title.lower()
    GROUP_TITLES[key] = title
    return {"group": key}


LIMITS = _group("Limits")
FORMATS = _group("Formats")
OUTPUTS = _group("Outputs")
WORK = _group("Work")
SERVER_AND_JOBS = _group("Server and jobs")
CELERY = _group("Celery")
JOB_DATABASE = _group("Job database")
STORAGE_AND_EVENTS = _group("Storage and events")
RECIPES_AND_OPERATIONS = _group("Recipes and operations")
SERVING = _group("Serving")
LOGGING = _group("Logging")
COMPATIBILITY = _group("Compatibility")
