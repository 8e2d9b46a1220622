"""All of tilewright's knobs, in one pydantic-settings class.

Values come from (highest priority first): keyword arguments, `TILEWRIGHT_*`
environment variables, the TOML file named by `TILEWRIGHT_CONFIG`, the defaults
below. Every field is documented in the README's configuration table; keep the
two in step (tests/test_config.py checks that they are).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tilewright.errors import ConfigError, one_line
from tilewright.imaging.colour import parse_colour


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TILEWRIGHT_", extra="ignore")

    # -- limits ---------------------------------------------------------------
    max_slide_pixels: int = Field(
        10**11, description="Largest tiled or multi-level image (width x height of level 0) accepted."
    )
    max_image_pixels: int = Field(
        5 * 10**8,
        description="Largest flat (untiled, single-level) image accepted; refuses decompression bombs.",
    )
    max_upload_bytes: int = Field(20 * 2**30, description="Largest upload or download accepted, in bytes.")
    time_limit_seconds: float = Field(
        4 * 3600.0, description="A conversion running longer than this is stopped and nothing is published."
    )

    # -- formats ----------------------------------------------------------------
    format_checkers: list[str] = Field(
        ["dicom", "openslide", "ometiff", "vips"],
        description="Readers tried in this order (most specific first); plug-ins from the "
        "`tilewright.formats` entry-point group are tried after these.",
    )

    # -- outputs --------------------------------------------------------------
    tile_format: Literal["jpeg", "png", "webp"] = Field("jpeg", description="Tile encoding.")
    quality: int = Field(85, ge=1, le=100, description="JPEG/WebP quality of tiles.")
    dzi_tile_size: int = Field(254, ge=16, le=8192, description="Deep Zoom tile size (without overlap).")
    dzi_overlap: int = Field(1, ge=0, le=64, description="Deep Zoom tile overlap in pixels.")
    tiff_tile_size: int = Field(256, ge=16, le=8192, description="Pyramidal TIFF tile size (multiple of 16).")
    iiif_tile_size: int = Field(512, ge=16, le=8192, description="IIIF tile size.")
    background: str = Field(
        "#ffffff",
        description="Colour transparent or out-of-slide pixels are flattened onto: `#rrggbb`, `#rgb` or a name "
        "(white, black, grey, ...).",
    )

    # -- work -------------------------------------------------------------------
    workers: int = Field(max(1, (os.cpu_count() or 2) // 2), ge=1, description="Files converted at once by `import`.")
    vips_concurrency: int = Field(0, ge=0, description="libvips worker threads per conversion (0: one per core).")

    # -- server and jobs --------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address `tilewright serve` listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port `tilewright serve` listens on.")
    data_dir: Path = Field(
        Path("./data"),
        description="Root of the server's state: database, uploads, outputs, "
        "job work directories (each derived path below defaults inside it).",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the job database (empty: SQLite file "
        "`DATA_DIR/tilewright.db`; `postgresql+psycopg://...` for PostgreSQL).",
    )
    executor: Literal["embedded", "celery"] = Field(
        "embedded", description="Where jobs run: a process pool inside `tilewright serve`, or Celery workers."
    )
    concurrency: int = Field(
        2, ge=1, description="Jobs run at once by the embedded pool or by one `tilewright worker`."
    )
    broker_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker URL (Redis or `amqp://` RabbitMQ).")
    result_backend: str = Field(
        "", description="Celery result backend URL (empty: the broker URL; job state itself lives in the job database)."
    )
    broker_fallback: bool = Field(
        True,
        description="If the broker is unreachable when the server starts, "
        "warn and run jobs embedded instead of refusing to start.",
    )
    celery_visibility_timeout: int = Field(
        3600,
        ge=1,
        description="Redis broker: seconds before a job taken by a worker that died is delivered to another worker.",
    )
    input_roots: list[Path] = Field(
        [],
        description="Folders whose files `convert`/`import` jobs may read "
        "(uploads are always allowed); any other input path is refused.",
    )
    output_root: Path | None = Field(
        None,
        description="Where job outputs are published (default "
        "`DATA_DIR/outputs`; uploads go to `OUTPUT_ROOT/COLLECTION/IMAGE_ID/`).",
    )
    upload_dir: Path | None = Field(None, description="Where uploaded files are stored (default `DATA_DIR/uploads`).")
    api_token: SecretStr | None = Field(
        None, description="If set, POST and DELETE requests need `Authorization: Bearer TOKEN`."
    )
    job_max_attempts: int = Field(
        3,
        ge=1,
        description="Attempts of a job failing for a transient reason (storage errors); bad input fails at once.",
    )
    job_retry_backoff_seconds: float = Field(2.0, ge=0, description="First retry delay; doubles with each attempt.")
    job_stale_seconds: float = Field(
        30.0,
        gt=0,
        description="A running job whose worker (on another host) has not reported for this long is taken over.",
    )

    # -- storage and events --------------------------------------------------------
    storage_root: Path | None = Field(
        None,
        description="Root of the local store (`file://` and plain paths in "
        "`watch` and blob jobs; default `DATA_DIR/storage`).",
    )
    output_store: str = Field(
        "",
        description="Where blob jobs publish (`az://`, `s3://BUCKET/PREFIX`, a local "
        "folder); empty: the source blob's own store (account or bucket). When it names a "
        "container or bucket, uploads are also published there (`COLLECTION/IMAGE_ID/`) "
        "and served from it, and import jobs (`COLLECTION/JOB_ID/`).",
    )
    output_template: str = Field(
        "{container}/web-slides-dzi-output/{stem}/",
        description="Output folder of a "
        "blob job inside the output store; fields `{container}` (or bucket), `{path}`, "
        "`{dir}`, `{name}`, `{stem}`, `{etag}`.",
    )
    storage_connections: int = Field(
        16, ge=1, le=256, description="Concurrent connections uploading a pyramid's tiles."
    )
    storage_retries: int = Field(
        4,
        ge=0,
        le=20,
        description="Retries of a storage request failing for a "
        "transient reason (timeouts, 5xx, throttling), with exponential backoff.",
    )
    storage_chunk_bytes: int = Field(
        4 * 2**20,
        ge=2**16,
        description="Chunk size of streamed downloads and uploads (memory per transfer is a few chunks).",
    )
    azure_connection_string: SecretStr | None = Field(
        None, description="Azure Storage connection string (Azurite: `UseDevelopmentStorage=true` style or full)."
    )
    azure_account_name: str = Field(
        "", description="Azure Storage account (with a key, SAS or managed identity instead of a connection string)."
    )
    azure_account_key: SecretStr | None = Field(None, description="Azure Storage account key.")
    azure_sas_token: SecretStr | None = Field(None, description="Azure Storage SAS token (account or container).")
    azure_use_identity: bool = Field(
        False,
        description="Authenticate with azure-identity's "
        "DefaultAzureCredential (managed identity, workload identity, az login).",
    )
    s3_endpoint_url: str = Field("", description="S3-compatible endpoint (MinIO, moto, Ceph); empty: AWS.")
    s3_region: str = Field("", description="S3 region (empty: the SDK's default).")
    s3_access_key_id: str = Field("", description="S3 access key id (empty: the SDK's credential chain).")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret access key.")
    event_sources: list[dict[str, Any]] = Field(
        [],
        description="Filters of event and watch sources, JSON list of "
        '`{"container": ..., "prefix": ..., "suffixes": [...]}` '
        "(container = bucket); empty: any container.",
    )
    event_suffixes: list[str] = Field(
        [".svs", ".ndpi", ".tif", ".tiff", ".scn", ".bif", ".qptiff", ".vms"],
        description="Blob name endings that make a job when a source names none.",
    )
    events_key: SecretStr | None = Field(
        None, description="If set, `/events/*` need it as `?key=` or the `aeg-sas-key` (or `x-tilewright-key`) header."
    )
    webhook_allowed_origins: list[str] = Field(
        [], description="CloudEvents webhook origins allowed by the OPTIONS handshake (empty: any)."
    )
    watch_interval_seconds: float = Field(30.0, gt=0, description="Seconds between two listings of `tilewright watch`.")
    functions_run_inline: bool = Field(
        True,
        description="Azure Functions adapter: run the job inside the "
        "function invocation (true) or only submit it to the job database (false).",
    )

    # -- recipes and operations ---------------------------------------------------
    recipe_dir: Path | None = Field(
        None, description="Folder of user recipes (NAME.toml); searched before the built-in ones."
    )
    default_recipe: str = Field("default", description="Recipe run when an upload or `process` names none.")
    watermark_text: str = Field("tilewright", description="Text of the watermark step when a recipe gives none.")
    watermark_font: str = Field("sans bold", description="Pango font (family and style) of text watermarks.")
    upload_recipe: str = Field(
        "",
        description="Recipe run on every upload that names none (`POST /images`); "
        "empty: uploads are plainly converted (dzi/tiff/iiif).",
    )
    process_inline_max_pixels: int = Field(
        50_000_000,
        ge=0,
        description="`POST /process` answers inline "
        "up to this many input pixels in total; larger requests become a job.",
    )

    # -- serving ------------------------------------------------------------------
    cache_url: str = Field(
        "",
        description="Redis URL of the tile cache (`redis://HOST:6379/1`); empty: an "
        "in-process LRU. If Redis cannot be reached the server warns once and caches in memory "
        "until it answers again.",
    )
    cache_bytes: int = Field(256 * 2**20, ge=0, description="Size of the in-process tile cache in bytes (0: none).")
    cache_ttl_seconds: int = Field(7 * 86400, ge=0, description="Expiry of tiles kept in Redis (0: never).")
    slide_handles: int = Field(
        32, ge=1, description="Slides the tile server keeps open (least recently used closed first)."
    )
    tile_passthrough: bool = Field(
        True,
        description="Serve a source's stored JPEG tile as it is when a request "
        "asks for exactly that tile (no decode, no re-encode; its quality is the file's).",
    )
    tiles_follow_source: bool = Field(
        True,
        description="Dynamic tiles follow a tiled source's own grid: the dynamic "
        "`.dzi` uses its tile size with no overlap and `info.json` its tile size (false: "
        "`DZI_TILE_SIZE`/`DZI_OVERLAP` and `IIIF_TILE_SIZE`).",
    )
    tile_threads: int = Field(
        16, ge=1, description="Threads rendering tiles; libvips work never runs on the event loop."
    )
    cors_origins: list[str] = Field(
        ["*"],
        description="Origins allowed to GET tiles, info.json and metadata "
        "from other sites (CORS); empty: no CORS headers.",
    )
    tile_cache_control: str = Field(
        "public, max-age=86400",
        description="`Cache-Control` header of tiles, thumbnails, regions and associated images.",
    )
    max_region_pixels: int = Field(
        4096 * 4096,
        ge=1,
        description="Largest output (width x height) of a `/region`, IIIF or thumbnail request; larger ones get a 400.",
    )
    openseadragon_dir: Path | None = Field(
        None,
        description="Folder with `openseadragon.min.js` and `images/` "
        "for the web page's viewer (default: `build/openseadragon` of the "
        "source tree, put there by `make`).",
    )

    # -- logging ----------------------------------------------------------------
    log_level: str = Field("WARNING", description="Python logging level.")
    log_format: Literal["plain", "json"] = Field("plain", description="Log lines as plain text or JSON.")

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
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
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


def settings_table() -> str:
    """The README's configuration table, generated from the fields above (tests check the README has it)."""
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default_factory is None else field.default_factory()
        if name == "workers":
            default = "cores / 2"
        shown = "" if default is None else (", ".join(map(str, default)) if isinstance(default, list) else default)
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | `TILEWRIGHT_{name.upper()}` | `{shown}` | {description} |")
    return "\n".join(rows)
