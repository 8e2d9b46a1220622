"""What a job kind is: its parameter model, its submission-time check and its run, and what a run gets.

A run gets a `TaskContext` (its parameters, settings, a private work directory,
`progress` and `cancelled`) and returns the job's outputs as a dict. It raises
`TilewrightError`s for bad input (the job fails once, with that reason) and
`TransientError` (or `OSError`) for things worth retrying. At submission, in the
server, the parameters are validated by the kind's pydantic model (`Task.params`),
then `Task.check` does what needs the settings (paths inside the input roots, a
recipe that loads) and names what the default idempotency key hashes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from tilewright.config import Settings
from tilewright.errors import TilewrightError
from tilewright.jobs.params import parse
from tilewright.pipeline import ProgressFn

P = TypeVar("P", bound=BaseModel)
_NOTHING = object()


class TransientError(TilewrightError):
    """A failure worth retrying later (storage unavailable, disk momentarily full)."""

    http_status = 503
    exit_code = 1


@dataclass
class TaskContext:
    """What a run gets: the recorded parameters (validate them with the kind's `Params`), the settings, a
    private work directory removed afterwards, the attempt number, and the progress and cancel hooks."""

    job_id: str
    params: dict[str, Any]
    settings: Settings
    work_dir: Path
    attempt: int = 1
    progress: ProgressFn = lambda fraction, stage: None
    cancelled: Callable[[], bool] = lambda: False


@dataclass(frozen=True)
class Task(Generic[P]):
    """One job kind. `check(params, settings)` -> (the parameters to record, the input's content for the key)."""

    params: type[P]
    check: Callable[[P, Settings], tuple[dict[str, Any], str]]
    run: Callable[[TaskContext], dict[str, Any]]
    description: str = ""
    #: record a parameter as it was sent ("256", "yes") unless the check changed it (a resolved path):
    #: the recorded parameters make the default idempotency key, and a kind whose keys hashed the values
    #: as sent must keep hashing them so, or a job submitted before is not found again
    as_sent: bool = False

    def prepare(self, kind: str, raw: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], str]:
        """Validate `raw` with the model (InputError naming what is wrong), then run the check."""
        model = parse(self.params, kind, raw)
        clean, material = self.check(model, settings)
        if self.as_sent:
            unchanged = {k: v for k, v in raw.items() if k in clean and clean[k] == getattr(model, k, _NOTHING)}
            clean = {**clean, **unchanged}
        return clean, material
