"""Logging set-up: plain or JSON lines at the settings' level, or an operator's `logging.dictConfig` file;
every record carries the id of the job it was written for (`job_id`), and no line carries a secret.

- `setup_logging(settings)`: called once per process (the CLI, each embedded pool process; a Celery
  worker's forked children inherit it). `LOG_CONFIG` names a YAML or JSON dictConfig file used instead of
  `LOG_LEVEL`/`LOG_FORMAT`; `DEBUG` (or `-v`) puts the root logger at DEBUG either way.
- `job_logging(job_id)`: the job runner wraps a job in it; every record created inside has `record.job_id`
  (also in the job's other threads when it is the process's only job), which both formatters write and a
  dictConfig format can name as `%(job_id)s`.
- `RedactFilter` masks credentials (`redact`) on every handler, the operator's too.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from tilewright.config import Settings
from tilewright.errors import ConfigError, one_line

# anything that looks like a credential is masked before a line is written
# `key=`/`code=`: the events key and a Functions key in an access log line (`POST /events/eventgrid?key=...`);
# Credential/Signature: an S3 request's (botocore logs its headers at DEBUG)
_SECRET = re.compile(
    r"(?i)((?:AccountKey|SharedAccessSignature|sig|password|token|secret|key|code|Credential|Signature)=)[^;&,\s\"']+"
)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]+(@)")  # redis://:pw@host, amqp://user:pw@host

#: the job whose code is running in this thread (context); None outside jobs
_job_id: ContextVar[str | None] = ContextVar("tilewright_job_id", default=None)
#: the jobs running in this process: a thread the job did not start in its context (libvips' own threads, the
#: progress reporter, transfer pools) still logs for the job when it is the only one (a pool process, a Celery child)
_running: dict[str, int] = {}
_running_lock = threading.Lock()
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def redact(text: str) -> str:
    """`text` with credentials masked: key=value secrets (connection strings, SAS) and URL passwords."""
    return _URL_PASSWORD.sub(r"\1***\2", _SECRET.sub(r"\1***", text))


@contextmanager
def job_logging(job_id: str) -> Iterator[None]:
    """Every log record created inside carries `job_id` (nested calls: the innermost id)."""
    token = _job_id.set(job_id)
    with _running_lock:
        _running[job_id] = _running.get(job_id, 0) + 1
    try:
        yield
    finally:
        _job_id.reset(token)
        with _running_lock:
            _running[job_id] -= 1
            if not _running[job_id]:
                del _running[job_id]


def current_job_id() -> str | None:
    """The job this thread logs for: its context's, else the process's only running job, else None."""
    job_id = _job_id.get()
    if job_id is None and len(_running) == 1:
        job_id = next(iter(_running), None)  # next(..., None): another thread may have just ended it
    return job_id


def _install_record_factory() -> None:
    """Give every record a `job_id` attribute (None outside a job), whichever handler or format writes it."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "tilewright", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.job_id = current_job_id()
        return record

    factory.tilewright = True  # type: ignore[attr-defined]  # a marker: installed once per process
    logging.setLogRecordFactory(factory)


class RedactFilter(logging.Filter):
    """Masks credentials in a record's message and traceback before any formatter sees it.

    A record without a secret is left as it is. One with a secret in an argument keeps its arguments (masked
    one by one: formatters such as uvicorn's access formatter unpack them); otherwise the message is replaced
    by its masked text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if redact(message) != message:
            if isinstance(record.args, tuple):
                record.msg = redact(str(record.msg))
                record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
            if not isinstance(record.args, tuple) or redact(record.getMessage()) != record.getMessage():
                record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, job_id (inside a job), exception."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            data["job_id"] = job_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data)


class PlainFormatter(logging.Formatter):
    """`PLAIN_FORMAT`, with the message of a job's lines prefixed `[job ID]`."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        job_id = getattr(record, "job_id", None)
        if not job_id:
            return super().formatMessage(record)
        message = record.message
        record.message = f"[job {job_id}] {message}"
        try:
            return super().formatMessage(record)
        finally:
            record.message = message


def load_log_config(path: Path) -> dict[str, Any]:
    """The dictConfig of a YAML (`.yaml`/`.yml`) or JSON file; `ConfigError` naming the file if it is neither."""
    try:
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml  # lazy: read only when an operator names a YAML logging file

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - unreadable, bad YAML or bad JSON: all one settings error
        raise ConfigError(f"TILEWRIGHT_LOG_CONFIG {path}: {one_line(exc)}") from None
    if not isinstance(data, dict) or "version" not in data:
        raise ConfigError(f"TILEWRIGHT_LOG_CONFIG {path}: not a logging.dictConfig mapping (it needs `version: 1`)")
    return data


def _every_handler() -> Iterator[logging.Handler]:
    yield from logging.getLogger().handlers
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            yield from logger.handlers


def setup_logging(settings: Settings, *, verbose: bool = False) -> None:
    """Configure this process's logging from the settings (see the module's docstring)."""
    _install_record_factory()
    debug = verbose or settings.debug
    root = logging.getLogger()
    if settings.log_config is not None:
        try:
            logging.config.dictConfig(load_log_config(settings.log_config))
        except (ValueError, TypeError, AttributeError, ImportError) as exc:  # what dictConfig raises for a bad file
            raise ConfigError(f"TILEWRIGHT_LOG_CONFIG {settings.log_config}: {one_line(exc)}") from None
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter() if settings.log_format == "json" else PlainFormatter(PLAIN_FORMAT))
        root.handlers[:] = [handler]
        root.setLevel(settings.log_level)
        # libvips warns on every odd byte of a damaged file; the error we raise says it in one line
        logging.getLogger("pyvips").setLevel(logging.ERROR)
    if debug:
        root.setLevel(logging.DEBUG)
        logging.getLogger("pyvips").setLevel(logging.DEBUG)
    for each in _every_handler():
        if not any(isinstance(f, RedactFilter) for f in each.filters):
            each.addFilter(RedactFilter())


def server_log_level(settings: Settings, *, verbose: bool = False) -> str | None:
    """uvicorn's `log_level` for `tilewright serve`: None (the dictConfig file decides) with `LOG_CONFIG`."""
    if settings.debug:
        return "debug"
    if verbose:
        return "info"
    return None if settings.log_config is not None else "warning"


def worker_log_level(settings: Settings, *, verbose: bool = False) -> str:
    """Celery's `--loglevel` for `tilewright worker` (it sets the root logger's level to it): DEBUG with `DEBUG`,
    the dictConfig file's root level with `LOG_CONFIG`, otherwise INFO (a worker says which jobs it takes)."""
    if verbose or settings.debug:
        return "DEBUG"
    if settings.log_config is not None:
        return logging.getLevelName(logging.getLogger().level)
    return "INFO"
