"""All of tilewright's knobs, in one pydantic-settings class.

Values come from (highest priority first): keyword arguments, `TILEWRIGHT_*`
environment variables, a Cytomine PIMS `.env` file named by `CONFIG_FILE` (`config.pims`),
the TOML file named by `TILEWRIGHT_CONFIG`, the defaults below. Each value is checked
where its field is declared (ranges, URL schemes in `config.urls`, colours), so a bad
setting fails at start-up in one line naming it.
Every field belongs to a group (`json_schema_extra=GROUP`): `config.markdown`
turns the fields into docs/configuration.md, one section per group.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tilewright.config.celery import CelerySettings
from tilewright.config.checkers import CheckerSettings
from tilewright.config.compat import CompatSettings
from tilewright.config.database import DatabaseSettings
from tilewright.config.events import EventSettings
from tilewright.config.groups import (
    GROUP_TITLES,
    LIMITS,
    OUTPUTS,
    RECIPES_AND_OPERATIONS,
    SERVER_AND_JOBS,
    WORK,
)
from tilewright.config.logging import LoggingSettings
from tilewright.config.pims import PimsEnvSource
from tilewright.config.serving import ServingSettings
from tilewright.config.storage import StorageSettings
from tilewright.errors import ConfigError, one_line
from tilewright.imaging.colour import parse_colour


class Settings(
    CompatSettings,
    CelerySettings,
    StorageSettings,
    EventSettings,
    ServingSettings,
    DatabaseSettings,
    CheckerSettings,
    LoggingSettings,
    BaseSettings,
):
    """Every setting; most groups are declared in modules of their own (mixins: storage, events, serving, the
    job database, Celery, the format checkers, logging, compatibility), one class all the same: one environment prefix,
    one TOML file, one page of docs."""

    model_config = SettingsConfigDict(env_prefix="TILEWRIGHT_", extra="ignore")

    # -- limits ---------------------------------------------------------------
    max_slide_pixels: int = Field(
        10**11,
        gt=0,
        description="Largest tiled or multi-level image (width x height of level 0) accepted.",
        json_schema_extra=LIMITS,
    )
    max_image_pixels: int = Field(
        5 * 10**8,
        gt=0,
        description="Largest flat (untiled, single-level) image accepted; refuses decompression bombs.",
        json_schema_extra=LIMITS,
    )
    max_upload_bytes: int = Field(
        20 * 2**30, gt=0, description="Largest upload or download accepted, in bytes.", json_schema_extra=LIMITS
    )
    max_request_body_bytes: int = Field(
        2**20,
        gt=0,
        description="Largest request body of a route that is not an upload (the JSON of /jobs and /process, "
        "event batches): refused with 413 before it is read whole.",
        json_schema_extra=LIMITS,
    )
    request_read_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="A request whose body sends no byte for this long is answered 408 and its upload discarded.",
        json_schema_extra=LIMITS,
    )
    time_limit_seconds: float = Field(
        4 * 3600.0,
        ge=0,
        description="A conversion running longer than this is stopped and nothing is published.",
        json_schema_extra=LIMITS,
    )

    # -- outputs --------------------------------------------------------------
    tile_format: Literal["jpeg", "png", "webp"] = Field("jpeg", description="Tile encoding.", json_schema_extra=OUTPUTS)
    quality: int = Field(85, ge=1, le=100, description="JPEG/WebP quality of tiles.", json_schema_extra=OUTPUTS)
    dzi_tile_size: int = Field(
        254, ge=16, le=8192, description="Deep Zoom tile size (without overlap).", json_schema_extra=OUTPUTS
    )
    dzi_overlap: int = Field(1, ge=0, le=64, description="Deep Zoom tile overlap in pixels.", json_schema_extra=OUTPUTS)
    tiff_tile_size: int = Field(
        256,
        ge=16,
        le=8192,
        multiple_of=16,
        description="Pyramidal TIFF tile size (multiple of 16).",
        json_schema_extra=OUTPUTS,
    )
    iiif_tile_size: int = Field(512, ge=16, le=8192, description="IIIF tile size.", json_schema_extra=OUTPUTS)
    background: str = Field(
        "#ffffff",
        description="Colour transparent or out-of-slide pixels are flattened onto: `#rrggbb`, `#rgb` or a name "
        "(white, black, grey, ...).",
        json_schema_extra=OUTPUTS,
    )

    # -- work -------------------------------------------------------------------
    workers: int = Field(
        max(1, (os.cpu_count() or 2) // 2),
        ge=1,
        description="Files converted at once by `import`.",
        json_schema_extra=WORK,
    )
    vips_concurrency: int = Field(
        0, ge=0, description="libvips worker threads per conversion (0: one per core).", json_schema_extra=WORK
    )

    # -- server and jobs --------------------------------------------------------
    host: str = Field(
        "127.0.0.1", description="Address `tilewright serve` listens on.", json_schema_extra=SERVER_AND_JOBS
    )
    port: int = Field(
        8000, ge=0, le=65535, description="Port `tilewright serve` listens on.", json_schema_extra=SERVER_AND_JOBS
    )
    data_dir: Path = Field(
        Path("./data"),
        description="Root of the server's state: database, uploads, outputs, "
        "job work directories (each derived path below defaults inside it).",
        json_schema_extra=SERVER_AND_JOBS,
    )
    executor: Literal["embedded", "celery"] = Field(
        "embedded",
        description="Where jobs run: a process pool inside `tilewright serve`, or Celery workers.",
        json_schema_extra=SERVER_AND_JOBS,
    )
    concurrency: int = Field(
        2,
        ge=1,
        description="Jobs run at once by the embedded pool or by one `tilewright worker`.",
        json_schema_extra=SERVER_AND_JOBS,
    )
    input_roots: list[Path] = Field(
        [],
        description="Folders whose files `convert`/`import` jobs may read "
        "(uploads are always allowed); any other input path is refused.",
        json_schema_extra=SERVER_AND_JOBS,
    )
    output_root: Path | None = Field(
        None,
        description="Where job outputs are published (default "
        "`DATA_DIR/outputs`; uploads go to `OUTPUT_ROOT/COLLECTION/IMAGE_ID/`).",
        json_schema_extra=SERVER_AND_JOBS,
    )
    upload_dir: Path | None = Field(
        None,
        description="Where uploaded files are stored (default `DATA_DIR/uploads`).",
        json_schema_extra=SERVER_AND_JOBS,
    )
    api_token: SecretStr | None = Field(
        None,
        description="If set, POST and DELETE requests need `Authorization: Bearer TOKEN`.",
        json_schema_extra=SERVER_AND_JOBS,
    )
    job_max_attempts: int = Field(
        3,
        ge=1,
        description="Attempts of a job failing for a transient reason (storage errors); bad input fails at once.",
        json_schema_extra=SERVER_AND_JOBS,
    )
    job_retry_backoff_seconds: float = Field(
        2.0, ge=0, description="First retry delay; doubles with each attempt.", json_schema_extra=SERVER_AND_JOBS
    )
    job_stale_seconds: float = Field(
        30.0,
        gt=0,
        description="Lease of a running job's owner, renewed with each heartbeat (twice a second): a job whose "
        "owner has not renewed it for this long is taken over; also how long a job's final write waits for an "
        "unavailable database.",
        json_schema_extra=SERVER_AND_JOBS,
    )

    # -- recipes and operations ---------------------------------------------------
    recipe_dir: Path | None = Field(
        None,
        description="Folder of user recipes (NAME.toml); searched before the built-in ones.",
        json_schema_extra=RECIPES_AND_OPERATIONS,
    )
    default_recipe: str = Field(
        "default",
        description="Recipe run when an upload or `process` names none.",
        json_schema_extra=RECIPES_AND_OPERATIONS,
    )
    watermark_text: str = Field(
        "tilewright",
        description="Text of the watermark step when a recipe gives none.",
        json_schema_extra=RECIPES_AND_OPERATIONS,
    )
    watermark_font: str = Field(
        "sans bold",
        description="Pango font (family and style) of text watermarks.",
        json_schema_extra=RECIPES_AND_OPERATIONS,
    )
    upload_recipe: str = Field(
        "",
        description="Recipe run on every upload that names none (`POST /images`); "
        "empty: uploads are plainly converted (dzi/tiff/iiif).",
        json_schema_extra=RECIPES_AND_OPERATIONS,
    )
    process_inline_max_pixels: int = Field(
        50_000_000,
        ge=0,
        description="`POST /process` answers inline "
        "up to this many input pixels in total; larger requests become a job.",
        json_schema_extra=RECIPES_AND_OPERATIONS,
    )

    @field_validator("background")
    @classmethod
    def _colour(cls, value: str) -> str:
        parse_colour(value)  # a bad colour is a settings error at start-up, never blamed on an input file
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # a Cytomine PIMS .env named by CONFIG_FILE (config/pims.py) ranks below TILEWRIGHT_* variables
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, PimsEnvSource(settings_cls)]
        config_file = os.environ.get("TILEWRIGHT_CONFIG")
        if config_file:
            if not Path(config_file).is_file():
                raise ValueError(f"TILEWRIGHT_CONFIG names {config_file!r}, which is not a file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    # -- derived paths (server and jobs) -----------------------------------------
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'tilewright.db').resolve()}"

    def resolved_output_root(self) -> Path:
        return (self.output_root or self.data_dir / "outputs").resolve()

    def resolved_upload_dir(self) -> Path:
        return (self.upload_dir or self.data_dir / "uploads").resolve()

    def work_root(self) -> Path:
        return (self.data_dir / "work").resolve()

    def resolved_storage_root(self) -> Path:
        return (self.storage_root or self.data_dir / "storage").resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; `ConfigError` (one line naming the setting) for a bad value."""
    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(p) for p in error["loc"])
        raise ConfigError(f"bad setting TILEWRIGHT_{name.upper()}: {error['msg']}") from None
    except ValueError as exc:  # TILEWRIGHT_CONFIG naming no file, a TOML file that does not parse
        raise ConfigError(one_line(exc)) from None


__all__ = ["GROUP_TITLES", "Settings", "get_settings"]
