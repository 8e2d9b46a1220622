"""Cytomine PIMS's configuration file as a settings source: `CONFIG_FILE` naming a `.env` file of PIMS's
own keys (`ROOT=/data/pims`, `CACHE_URL=...`), read alongside tilewright's settings.

Each PIMS key is checked by `PimsEnv` (its type as PIMS declares it, case-insensitive like PIMS); the keys
with a tilewright meaning become those settings (`_to_settings`), the others PIMS knows are accepted and
ignored (`IGNORED`: Cytomine's own services, PIMS's caches), and any other key is an error naming it, so a
typo never passes silently. Priority: keyword arguments, `TILEWRIGHT_*` variables, this file, the TOML
file, the defaults. Without `CONFIG_FILE` nothing is read (PIMS's fallback `./pims-config.env` is not:
a stray file must not change a tilewright server).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from tilewright.errors import ConfigError

ENV_VAR = "CONFIG_FILE"
#: PIMS reads this file from its working folder when the .env names none (and only if it is there)
DEFAULT_CHECKER_FILE = Path("checkerResolution.csv")
#: PIMS's keys with no tilewright meaning: accepted so that an existing file loads, and not used
IGNORED = (
    "writing_path",
    "default_image_size_safety_mode",
    "default_annotation_origin",
    "internal_url_core",
    "cache_image_format_metadata",
    "cache_image_responses",
    "cache_responses",
    "cache_ttl_thumb",
    "cache_ttl_resized",
    "cache_ttl_window",
    "memory_lru_cache_capacity",
    "max_pixels_complete_histogram",
    "max_length_complete_histogram",
    "vips_allow_leak",
    "vips_cache_max_items",
    "vips_cache_max_memory",
    "vips_cache_max_files",
    "auto_delete_multi_file_format_archive",
    "auto_delete_collection_archive",
    "auto_delete_failed_upload",
    "easy_import_project_name_strategy",
    "easy_import_project_name_length",
    "easy_import_project_name_offset",
    "cytomine_public_key",
    "cytomine_private_key",
    "enable_auto_import_scan",
    "auto_import_scan_interval",
    "auto_import_target_storage_username",
    "import_lock_key",
    "processed_files_cache_key",
)


class PimsEnv(BaseModel):
    """The keys of PIMS's `pims/config.py` that tilewright maps, typed as PIMS types them; `IGNORED` ones
    are accepted as any text; any other key is refused (`extra="forbid"`)."""

    model_config = ConfigDict(extra="forbid")

    root: Path | None = None
    pending_path: Path | None = None
    dataset_path: Path | None = None
    checker_resolution_file: Path | None = None
    output_size_limit: int | None = Field(None, gt=0)
    pims_url: str | None = None
    api_base_path: str | None = None
    cache_enabled: bool | None = None
    cache_url: str | None = None
    cache_ttl_tile: int | None = Field(None, ge=0)
    image_response_cache_control_max_age: int | None = Field(None, ge=0)
    task_queue_enabled: bool | None = None
    task_queue_url: str | None = None
    task_queue_user: str = "router"  # PIMS's defaults, used when the file names a queue but no account
    task_queue_password: str = "router"
    # owned by the logging settings; named here so that the file may carry them
    log_config_file: Path | None = None
    debug: bool | None = None


def _to_settings(env: PimsEnv) -> dict[str, Any]:
    """Tilewright's settings (field names) for the keys the file gives; a key not given sets nothing."""
    given = env.model_fields_set
    out: dict[str, Any] = {}
    if env.root is not None:
        out["data_dir"] = env.root  # PIMS's one root of images and state
    if env.pending_path is not None:
        out["upload_dir"] = env.pending_path  # where uploads wait
    if env.dataset_path is not None:
        out["input_roots"] = [env.dataset_path]  # the local folders imports read
    if env.checker_resolution_file is not None:
        out["checker_resolution_file"] = env.checker_resolution_file
    elif DEFAULT_CHECKER_FILE.is_file():
        out["checker_resolution_file"] = DEFAULT_CHECKER_FILE
    if env.output_size_limit is not None:
        # PIMS caps each side of a response; tilewright caps width x height: the square of PIMS's side
        out["max_region_pixels"] = env.output_size_limit**2
    if env.pims_url is not None:
        out["public_url"] = env.pims_url
    if env.api_base_path is not None:
        out["root_path"] = env.api_base_path
    if env.cache_enabled is False:
        out.update(cache_url="", cache_bytes=0)  # no cache at all, as PIMS with CACHE_ENABLED=false
    elif env.cache_url is not None:
        out["cache_url"] = env.cache_url
    if env.cache_ttl_tile is not None:
        out["cache_ttl_seconds"] = env.cache_ttl_tile
    if env.image_response_cache_control_max_age is not None:
        out["tile_cache_control"] = f"public, max-age={env.image_response_cache_control_max_age}"
    if env.task_queue_url is not None:
        # PIMS names the RabbitMQ host:port and the account apart; Celery wants one amqp:// URL
        address = env.task_queue_url.removeprefix("amqp://")
        out["broker_url"] = f"amqp://{env.task_queue_user}:{env.task_queue_password}@{address}//"
    if "task_queue_enabled" in given:
        out["executor"] = "celery" if env.task_queue_enabled else "embedded"
    # the logging settings' names; until they exist, `Settings` (extra="ignore") passes them over
    if env.log_config_file is not None:
        out["log_config"] = env.log_config_file
    if env.debug is not None:
        out["debug"] = env.debug
    return out


def read_pims_env(path: Path) -> dict[str, Any]:
    """The tilewright settings a PIMS `.env` file gives; `ConfigError` naming the file and the key."""
    if not path.is_file():
        raise ConfigError(f"{ENV_VAR} names {str(path)!r}, which is not a file")
    raw = {key.lower(): value for key, value in dotenv_values(path).items() if value is not None}
    known = {key: value for key, value in raw.items() if key not in IGNORED}
    try:
        env = PimsEnv.model_validate(known)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0]).upper() if error["loc"] else "?"
        if error["type"] == "extra_forbidden":
            raise ConfigError(f"{ENV_VAR} {path}: unknown key {key} (not a PIMS setting)") from None
        raise ConfigError(f"{ENV_VAR} {path}: bad value for {key}: {error['msg']}") from None
    return _to_settings(env)


class PimsEnvSource(PydanticBaseSettingsSource):
    """The settings source of the PIMS `.env` named by `CONFIG_FILE` (nothing when it is not set)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        name = os.environ.get(ENV_VAR)
        self._values = read_pims_env(Path(name)) if name else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)
