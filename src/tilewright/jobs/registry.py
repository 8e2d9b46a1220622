"""The registry of job kinds: a new kind is one module in `jobs/kinds/` and one line in `TASKS`.

See `jobs.kind` for what a kind is (`Task`: a pydantic `Params` model, a check, a run).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tilewright.config import Settings
from tilewright.errors import InputError
from tilewright.jobs.kind import Task
from tilewright.jobs.kinds import convert, convert_blob, import_, ping, process, recipe, recipe_blob

TASKS: dict[str, Task[Any]] = {
    "convert": convert.TASK,
    "import": import_.TASK,
    "ping": ping.TASK,
    "process": process.TASK,
    "recipe": recipe.TASK,
    convert_blob.KIND: convert_blob.TASK,
    recipe_blob.KIND: recipe_blob.TASK,
}


def prepare(kind: str, params: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], str]:
    """Checked parameters and the default idempotency key (kind + parameters + input content)."""
    task = TASKS.get(kind)
    if task is None:
        raise InputError(f"unknown job kind {kind!r}; choose one of {', '.join(TASKS)}")
    if not isinstance(params, dict):
        raise InputError("job parameters must be a JSON object")
    clean, material = task.prepare(kind, params, settings)
    digest = hashlib.sha256(f"{kind}\0{json.dumps(clean, sort_keys=True, default=str)}\0{material}".encode())
    return clean, digest.hexdigest()
