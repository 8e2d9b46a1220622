"""Settings of the logs (group "Logging"): mixed into `Settings`.

Two fields also answer to the environment names PIMS uses (`LOG_CONFIG_FILE`, `DEBUG`), so an
operator's existing deployment files keep working; the `TILEWRIGHT_*` name wins when both are set.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, FilePath, field_validator

from tilewright.config.groups import LOGGING

_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


class LoggingSettings(BaseModel):
    log_level: str = Field(
        "WARNING",
        description="Python logging level (DEBUG, INFO, WARNING, ERROR, CRITICAL); ignored when `LOG_CONFIG` names "
        "a file (its root logger's level counts).",
        json_schema_extra=LOGGING,
    )
    log_format: Literal["plain", "json"] = Field(
        "plain",
        description="Log lines as plain text or JSON (one object a line: time, level, logger, message, job_id).",
        json_schema_extra=LOGGING,
    )
    log_config: FilePath | None = Field(
        None,
        # the field name first: Settings(log_config=...) and the TOML key; then the prefixed and PIMS's names
        validation_alias=AliasChoices("log_config", "TILEWRIGHT_LOG_CONFIG", "LOG_CONFIG_FILE"),
        description="A `logging.dictConfig` file, YAML (`.yaml`/`.yml`) or JSON, used instead of `LOG_LEVEL` and "
        "`LOG_FORMAT` (also read from `LOG_CONFIG_FILE`, PIMS's name). Its formatters may use `%(job_id)s`; "
        "`tilewright.logs.JsonFormatter` writes JSON lines; secrets are masked on every handler.",
        json_schema_extra=LOGGING,
    )
    debug: bool = Field(
        False,
        validation_alias=AliasChoices("debug", "TILEWRIGHT_DEBUG", "DEBUG"),
        description="Log at DEBUG level, whatever `LOG_LEVEL` or the `LOG_CONFIG` file says (also read from "
        "`DEBUG`, PIMS's name; `--debug` of `serve` and `worker`).",
        json_schema_extra=LOGGING,
    )

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in _LEVELS:
            raise ValueError(f"unknown level {value!r}; one of {', '.join(_LEVELS)}")
        return value.upper()
