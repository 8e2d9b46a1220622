"""Logging set-up: plain lines or JSON lines, level from settings (or -v)."""

from __future__ import annotations

import json
import logging
import re
import time

from tilewright.config import Settings

# anything that looks like a credential is masked before a line is written
_SECRET = re.compile(r"(?i)((?:AccountKey|SharedAccessSignature|sig|password|token|secret)=)[^;&\s]+")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]+(@)")  # redis://:pw@host, amqp://user:pw@host


def redact(text: str) -> str:
    """`text` with credentials masked: key=value secrets (connection strings, SAS) and URL passwords."""
    return _URL_PASSWORD.sub(r"\1***\2", _SECRET.sub(r"\1***", text))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            data["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(data)


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(settings: Settings, *, verbose: bool = False) -> None:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else settings.log_level.upper())
    # libvips warns on every odd byte of a damaged file; the error we raise says it in one line
    logging.getLogger("pyvips").setLevel(logging.DEBUG if verbose else logging.ERROR)
