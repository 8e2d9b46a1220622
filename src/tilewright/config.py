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
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


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
    background: str = Field("#ffffff", description="Colour transparent or out-of-slide pixels are flattened onto.")

    # -- work -------------------------------------------------------------------
    workers: int = Field(
        max(1, (os.cpu_count() or 2) // 2), ge=1, description="Files converted at once by `import`."
    )
    vips_concurrency: int = Field(0, ge=0, description="libvips worker threads per conversion (0: one per core).")

    # -- logging ----------------------------------------------------------------
    log_level: str = Field("WARNING", description="Python logging level.")
    log_format: Literal["plain", "json"] = Field("plain", description="Log lines as plain text or JSON.")

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
